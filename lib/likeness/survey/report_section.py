"""The report's section on the survey: design, sample, exclusions, results, limitations.

Every number comes from the computed results (``results/*.csv`` and ``summary.json`` written
by :func:`likeness.survey.analyze.analyze_survey`) and the checked design; nothing is typed in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from likeness.survey import SurveyError
from likeness.survey.analyze import RESULTS_DIR
from likeness.survey.design import load_design

FIGURE_CAPTION = ("Share of analysed respondents who named the claimant (open question) and who "
                  "picked the claimant's photo (lineup), per stimulus, with Wilson 95% intervals; "
                  "dotted: lineup chance 1/(k+1); dashed: pooled controls.")


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _interval(lo: float, hi: float) -> str:
    if lo is None or math.isnan(lo):
        return "–"
    return f"{100 * lo:.1f}–{100 * hi:.1f}%"


def _signed(value: float, lo: float, hi: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{100 * value:+.1f} pts ({100 * lo:+.1f} to {100 * hi:+.1f})"


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "∞" if math.isinf(value) else f"{value:.2f}"


def survey_markdown(survey_dir: str | Path, results_dir: str | Path | None = None
                    ) -> tuple[str, list[Path]]:
    """The survey section as Markdown, and the paths of its figures (PNG, shown after the
    text with the caption FIGURE_CAPTION).

    Raises SurveyError when the design or the results are missing or do not belong together.
    """
    survey_dir = Path(survey_dir)
    results_dir = Path(results_dir) if results_dir else survey_dir / RESULTS_DIR
    design = load_design(survey_dir)
    try:
        summary = json.loads((results_dir / "summary.json").read_text(encoding="utf-8"))
        episodes = pd.read_csv(results_dir / "episodes.csv")
        stimuli = pd.read_csv(results_dir / "stimuli.csv")
    except FileNotFoundError as exc:
        raise SurveyError(f"{exc.filename}: missing: run `likeness survey analyze` first") from exc
    if summary["design_sha256"] != design["design_sha256"]:
        raise SurveyError(f"{results_dir}: results of another design than {survey_dir}: "
                          "analyse the responses again")
    opts = design["options"]
    exc = summary["exclusions"]
    n_q = sum(s["role"] == "questioned" for s in design["stimuli"])
    n_c = len(design["stimuli"]) - n_q
    lines = [
        "## Survey of the public's recognition",
        "",
        "### Design",
        "",
        f"Survey `{design['survey_id']}`, design SHA-256 `{design['design_sha256']}`, built from "
        f"the analysed run of case `{design['case_id']}`. {len(design['stimuli'])} face stimuli: "
        f"{n_q} from questioned episodes (strongest track log10 LR ≥ "
        f"{design['operating_point_log10_lr']:g}) and {n_c} controls. Each respondent first "
        "answered, for every face, “Do you recognise this person? If so, who?”, then, for every "
        f"face, chose among the claimant's photo and {opts['k_foils']} foils (the population "
        "photos most similar to the face) or “not present / not sure”, and rated confidence on "
        f"a {opts['confidence_levels']}-point scale. Order and lineup positions were shuffled "
        "per respondent from a recorded seed; an attention check sat in the first block. "
        f"Accepted names of the claimant: {', '.join(design['accepted_names'])}.",
        "",
        "Rules: " + "; ".join(design["rules"]) + ".",
        "",
        "### Sample and exclusions",
        "",
        "| | respondents |",
        "|---|---:|",
        f"| received | {exc['received']} |",
        f"| excluded: incomplete | {exc['incomplete']} |",
        f"| excluded: failed attention check | {exc['failed attention check']} |",
        f"| analysed | {exc['analysed']} |",
        "",
        f"For a 95% interval no wider than ±{100 * summary['precision']:.0f} points at any rate, "
        f"{summary['required_n_per_cell']} analysed respondents are needed per cell; "
        + (f"with {exc['analysed']} the worst-case half-width is "
           f"±{100 * summary['achieved_half_width_worst_case']:.1f} points."
           if exc["analysed"] else "no respondent could be analysed."),
        "",
        "### Results per episode",
        "",
        f"Chance in a lineup of {opts['k_foils'] + 1} photos is {_pct(summary['chance'])}. "
        f"Pooled controls: {_pct(summary['control']['named_rate'])} named the claimant, "
        f"{_pct(summary['control']['lineup_rate'])} picked the claimant's photo. Intervals are "
        "Wilson 95%; the net of control uses Newcombe's score interval.",
        "",
        "| episode | role | n | named the claimant | 95% interval | net of control | "
        "picked in lineup | 95% interval | net of control | functional size | Tredoux's E |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in episodes.itertuples():
        lines.append(
            f"| {r.group} | {r.role} | {r.n} | {_pct(r.named_rate)} | "
            f"{_interval(r.named_lo, r.named_hi)} | "
            f"{_signed(r.named_net_control, r.named_net_lo, r.named_net_hi)} | "
            f"{_pct(r.lineup_rate)} | {_interval(r.lineup_lo, r.lineup_hi)} | "
            f"{_signed(r.lineup_net_control, r.lineup_net_lo, r.lineup_net_hi)} | "
            f"{_number(r.functional_size)} | {_number(r.tredoux_e)} |")
    lines += [
        "",
        "Lineup fairness per stimulus (bootstrap 95% intervals over respondents; a fair lineup "
        f"of {opts['k_foils'] + 1} has functional size and E near {opts['k_foils'] + 1}):",
        "",
        "| stimulus | episode | choosers | functional size | interval | Tredoux's E | interval |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in stimuli.itertuples():
        lines.append(
            f"| {r.stimulus} | {r.group} | {r.n_choosers} | {_number(r.functional_size)} | "
            f"{_number(r.functional_size_lo)}–{_number(r.functional_size_hi)} | "
            f"{_number(r.tredoux_e)} | {_number(r.tredoux_e_lo)}–{_number(r.tredoux_e_hi)} |")
    limits = [
        "The respondents stand for the relevant public only as far as they were recruited "
        "from it; this survey's sampling frame must be stated by whoever ran it.",
        "Faces are shown as still crops from the footage, not as the moving episode seen by "
        "the public; recognition in the episode may differ.",
        "Answers to several faces by one respondent are not independent; per-episode intervals "
        "treat them as if they were when an episode has several stimuli.",
        "The lineup shows the claimant's photo: a respondent who knows the claimant by name may "
        "recognise the photo rather than match the face.",
    ]
    if exc["analysed"] < summary["required_n_per_cell"]:
        limits.insert(0, f"The sample ({exc['analysed']} analysed) is smaller than the "
                         f"{summary['required_n_per_cell']} needed for the stated precision: "
                         "the intervals are correspondingly wide.")
    lines += ["", "### Limitations", ""] + [f"- {text}" for text in limits]
    lines.append("")
    return "\n".join(lines), [f for f in [results_dir / "figures" / "survey_rates.png"]
                              if f.exists()]


def survey_files(survey_dir: str | Path, results_dir: str | Path | None = None
                 ) -> dict[str, str]:
    """SHA-256 of every file the survey section rests on (design, page, images, results),
    keyed by path relative to ``survey_dir``: for the report's manifest."""
    from likeness.files import sha256_file

    survey_dir = Path(survey_dir)
    results_dir = Path(results_dir) if results_dir else survey_dir / RESULTS_DIR
    design = load_design(survey_dir)
    files = [survey_dir / "design.json", survey_dir / "survey.html"]
    files += [survey_dir / s["image"] for s in design["stimuli"]]
    files += [survey_dir / s["frame_image"] for s in design["stimuli"] if "frame_image" in s]
    files += [survey_dir / p["image"] for p in design["photos"].values()]
    files += sorted(p for p in results_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(survey_dir) if p.is_relative_to(survey_dir) else p):
            sha256_file(p) for p in files}
