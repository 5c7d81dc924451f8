"""What the report shows of the population: its description (identities, photos, sizes and
the attributes of ``population.csv``), the case's statement of why it is relevant, and a
warning when few identities share the attributes declared for the claimant."""

from __future__ import annotations

import pandas as pd

from likeness.case import Case, population_exclude
from likeness.population import describe_population, matching_identities
from likeness.provenance import NOT_RECORDED


def population_description(case: Case) -> dict[str, pd.DataFrame]:
    """The case's population as the analysis lists it (exclusions and the per-identity cap
    applied), described by :func:`likeness.population.describe_population`."""
    if case.population_root is None:
        empty = pd.DataFrame(columns=["quantity", "value"])
        return {"summary": empty, "attributes": empty, "identities": empty}
    return describe_population(case.population_root, population_exclude(case),
                               max_per_identity=case.analysis.max_photos_per_identity)


def population_relevance_markdown(case: Case) -> str:
    """The case's relevance statement, the claimant's declared attributes, and how many
    identities of the population share them, with a warning below the case's minimum."""
    p = case.provenance
    lines = []
    relevance = p.population_relevance or f"*{NOT_RECORDED} in the case file*"
    lines.append(f"**Why this population is relevant** (from the case file): {relevance}")
    lines.append("")
    if not p.claimant_attributes:
        lines.append(f"**The claimant's attributes**: *{NOT_RECORDED}*; the report cannot say "
                     "how many people of the population resemble the claimant in sex, age, "
                     "ethnicity or occupation.")
        return "\n".join(lines)
    declared = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in p.claimant_attributes.items())
    lines.append(f"**The claimant's attributes** (declared in the case file): {declared}.")
    lines.append("")
    identities = population_description(case)["identities"]
    matching = matching_identities(identities, p.claimant_attributes)
    if matching is None:
        lines.append(
            "**Warning:** the population records none of these attributes (no "
            "`population.csv`, or a column left empty): how many of its identities share them "
            "is unknown."
        )
    elif matching < p.min_matching_identities:
        lines.append(
            f"**Warning:** only {matching} of the {len(identities)} identities share all of "
            f"these attributes, fewer than the {p.min_matching_identities} the case requires "
            "for a population to stand for people like the claimant. The likelihood ratios "
            "may overstate the evidence: people who share these attributes and resemble the "
            "claimant are barely represented."
        )
    else:
        lines.append(f"{matching} of the {len(identities)} identities share all of these "
                     f"attributes (the case requires at least {p.min_matching_identities}).")
    return "\n".join(lines)


def show_population_attributes(description: dict[str, pd.DataFrame]):
    """The identities per attribute value of ``population.csv``, or a sentence saying the
    population records no attributes."""
    from likeness.report.render import show_markdown, show_table

    table = description["attributes"]
    if table.empty:
        return show_markdown(
            "*The population folder has no `population.csv`: its identities' sex, age band, "
            f"ethnicity and occupation are {NOT_RECORDED}.*")
    return show_table(table, "The population's identities by attribute (population.csv)",
                      digits=0)
