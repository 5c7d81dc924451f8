"""Analysis of a recognition survey: rates with intervals, net of control, lineup fairness.

Declared methods (recorded in ``summary.json``):

* Exclusions, in this order: incomplete responses, then complete responses whose attention
  check is wrong. Both are counted and reported; the rest are analysed.
* Open recognition: the share of respondents who say they recognise the face *and* name the
  claimant (an answer containing one of the design's accepted names after normalisation, see
  :func:`normalise_name`). The share who only say "yes" is reported beside it.
* Lineup identification: the share of respondents who pick the claimant's photo. Chance is
  1/(k+1) for k foils. Intervals: Wilson score 95%.
* Net of control: a questioned stimulus's rate minus the pooled rate of the control stimuli
  (faces not attributed to the claimant, which measure guessing and resemblance); interval by
  Newcombe's hybrid score method (1998, method 10).
* Lineup fairness from the choices among lineup photos (choices of "not present / not sure"
  left out): functional size = choosers / choosers of the claimant (Wells, Leippe & Ostrom
  1979; infinite when nobody picks the claimant), Tredoux's E = 1 / sum of squared choice
  shares (Tredoux 1998; 1 to k+1). Intervals: percentile bootstrap over respondents.
* Sample size for a stated precision: the n at which a 95% interval's half-width is at most
  the target for the least favourable rate, 0.5 (normal approximation).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from likeness.files import write_csv_atomic, write_json_atomic
from likeness.survey import SurveyError
from likeness.survey.design import canonical_json, load_design
from likeness.survey.responses import NOT_PRESENT, answers_table, open_responses

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20260325
DEFAULT_PRECISION = 0.05
RESULTS_DIR = "results"
# Letters of scripts that separate words by spaces (Latin, Greek, Cyrillic): names in them
# must match as whole words ("Reeves" must not match inside "Reevesville").
SPACED_SCRIPTS = re.compile("[a-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")


def normalise_name(text: str) -> str:
    """Case, accents, punctuation and spacing removed: 'Keanu  REEVES', 'keanu reeves.' and
    'Kéanu Reeves' compare equal; Cyrillic and CJK are kept (accents stripped alike)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c
                   for c in decomposed if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", kept.casefold()).strip()


def names_claimant(answer: str | None, accepted: list[str]) -> bool:
    """Whether an open answer names the claimant: it contains an accepted name as whole words,
    or, for names written without spaces (Chinese, Japanese), as a run of characters."""
    if not answer:
        return False
    text = normalise_name(answer)
    padded, compact = f" {text} ", text.replace(" ", "")
    for name in accepted:
        norm = normalise_name(name)
        if not norm:
            continue
        if f" {norm} " in padded:
            return True
        if not SPACED_SCRIPTS.search(norm) and norm.replace(" ", "") in compact:
            return True
    return False


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaN when n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At k = 0 and k = n the bounds are exactly 0 and 1; rounding must not move them.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    return lo, 1.0 if k == n else min(1.0, centre + half)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10)."""
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def functional_size(choices: np.ndarray, claimant: str) -> float:
    """Choosers / choosers of the claimant (inf when none picks the claimant)."""
    hits = int(np.sum(choices == claimant))
    return len(choices) / hits if hits else math.inf


def tredoux_e(choices: np.ndarray) -> float:
    """1 / sum of squared choice shares over the lineup photos chosen (NaN with no choice)."""
    if len(choices) == 0:
        return math.nan
    _, counts = np.unique(choices, return_counts=True)
    shares = counts / counts.sum()
    return float(1.0 / np.sum(shares**2))


def bootstrap_interval(choices: np.ndarray, statistic, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic`` over resampled respondents."""
    if len(choices) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.array([statistic(choices[rng.integers(0, len(choices), len(choices))])
                       for _ in range(BOOTSTRAP_SAMPLES)])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def sample_size(precision: float, p: float = 0.5, z: float = Z95) -> int:
    """Respondents per cell for a 95% interval of half-width ``precision`` at rate ``p``."""
    return math.ceil(z * z * p * (1 - p) / precision**2)


def apply_exclusions(answers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(analysed answers, exclusions table with reason and number of respondents)."""
    per = answers.groupby("response_id", sort=True).agg(
        complete=("complete", "first"), attention=("attention_passed", "first"))
    incomplete = ~per["complete"]
    failed = per["complete"] & ~per["attention"]
    exclusions = pd.DataFrame([
        {"reason": "received", "n_respondents": len(per)},
        {"reason": "incomplete", "n_respondents": int(incomplete.sum())},
        {"reason": "failed attention check", "n_respondents": int(failed.sum())},
        {"reason": "analysed", "n_respondents": int((~incomplete & ~failed).sum())},
    ])
    kept = per.index[~incomplete & ~failed]
    return answers[answers["response_id"].isin(kept)].copy(), exclusions


def _rates(rows: pd.DataFrame) -> dict:
    n = len(rows)
    n_yes = int(rows["recognised"].eq("yes").sum())
    n_named = int(rows["named_claimant"].sum())
    n_pick = int(rows["picked_claimant"].sum())
    n_none = int(rows["lineup_choice"].eq(NOT_PRESENT).sum())
    named_lo, named_hi = wilson(n_named, n)
    pick_lo, pick_hi = wilson(n_pick, n)
    return {"n": n, "n_recognised": n_yes, "recognised_rate": n_yes / n if n else math.nan,
            "n_named": n_named, "named_rate": n_named / n if n else math.nan,
            "named_lo": named_lo, "named_hi": named_hi,
            "n_lineup_claimant": n_pick, "lineup_rate": n_pick / n if n else math.nan,
            "lineup_lo": pick_lo, "lineup_hi": pick_hi, "n_not_present": n_none}


def _fairness(rows: pd.DataFrame, claimant: str, seed: int) -> dict:
    choices = rows.loc[rows["lineup_choice"].ne(NOT_PRESENT), "lineup_choice"].to_numpy(str)
    fs_lo, fs_hi = bootstrap_interval(choices, lambda c: functional_size(c, claimant), seed)
    e_lo, e_hi = bootstrap_interval(choices, tredoux_e, seed + 1)
    return {"n_choosers": len(choices),
            "functional_size": functional_size(choices, claimant) if len(choices) else math.nan,
            "functional_size_lo": fs_lo, "functional_size_hi": fs_hi,
            "tredoux_e": tredoux_e(choices), "tredoux_e_lo": e_lo, "tredoux_e_hi": e_hi}


def _net(table: pd.DataFrame, control: dict) -> pd.DataFrame:
    for measure, count in (("named", "n_named"), ("lineup", "n_lineup_claimant")):
        nets = [newcombe_difference(int(r[count]), int(r["n"]), control[count], control["n"])
                if r["role"] == "questioned" else (math.nan,) * 3 for _, r in table.iterrows()]
        table[f"{measure}_net_control"] = [x[0] for x in nets]
        table[f"{measure}_net_lo"] = [x[1] for x in nets]
        table[f"{measure}_net_hi"] = [x[2] for x in nets]
    return table


def analyze_survey(survey_dir: str | Path, responses: str | Path, out_dir: str | Path | None = None,
                   *, precision: float = DEFAULT_PRECISION) -> dict:
    """Analyse the responses of a survey; write the tables, ``summary.json`` and the figure
    into ``out_dir`` (default ``SURVEY_DIR/results``); return the summary."""
    from likeness.survey.figures import rates_figure

    survey_dir = Path(survey_dir)
    out_dir = Path(out_dir) if out_dir else survey_dir / RESULTS_DIR
    design = load_design(survey_dir)
    items = open_responses(design, responses)
    if not items:
        raise SurveyError(f"{responses}: no responses: nothing to analyse")
    answers = answers_table(design, items)
    accepted = design["accepted_names"]
    answers["named_claimant"] = [r == "yes" and names_claimant(n, accepted) for r, n in
                                 zip(answers["recognised"], answers["name"], strict=True)]
    claimant_of = {s["id"]: s["lineup"]["claimant"] for s in design["stimuli"]}
    answers["picked_claimant"] = [c == claimant_of.get(s) for s, c in
                                  zip(answers["stimulus"], answers["lineup_choice"], strict=True)]
    analysed, exclusions = apply_exclusions(answers)
    k = design["options"]["k_foils"]
    chance = 1.0 / (k + 1)

    control_rows = analysed[analysed["role"].eq("control")]
    control = _rates(control_rows)
    stim_rows, choice_rows = [], []
    for i, s in enumerate(design["stimuli"]):
        rows = analysed[analysed["stimulus"].eq(s["id"])]
        claimant = s["lineup"]["claimant"]
        stim_rows.append({
            "stimulus": s["id"], "group": s["group"], "role": s["role"], "source": s["source"],
            "track_id": s.get("track_id"), "time_s": s.get("time_s"),
            "track_log10_lr": s.get("track_log10_lr"), **_rates(rows),
            "k_foils": k, "chance": chance, **_fairness(rows, claimant, BOOTSTRAP_SEED + 10 * i),
        })
        counts = rows["lineup_choice"].value_counts()
        for pid in [*s["lineup"]["options"], NOT_PRESENT]:
            choice_rows.append({
                "stimulus": s["id"], "photo": pid,
                "role": design["photos"][pid]["role"] if pid != NOT_PRESENT else NOT_PRESENT,
                "identity": design["photos"][pid]["identity"] if pid != NOT_PRESENT else "",
                "similarity": s["lineup"]["similarity"].get(pid, math.nan),
                "n_chosen": int(counts.get(pid, 0))})
    stimuli = _net(pd.DataFrame(stim_rows), control)

    group_rows = []
    for group, of_group in stimuli.groupby("group", sort=False):
        rows = analysed[analysed["group"].eq(group)]
        single = of_group.iloc[0] if len(of_group) == 1 else None
        group_rows.append({
            "group": group, "role": of_group["role"].iloc[0], "n_stimuli": len(of_group),
            "track_log10_lr": of_group["track_log10_lr"].max(), **_rates(rows),
            "k_foils": k, "chance": chance,
            # Functional size and E describe one lineup: given when the group has one.
            "functional_size": single["functional_size"] if single is not None else math.nan,
            "tredoux_e": single["tredoux_e"] if single is not None else math.nan,
        })
    groups = _net(pd.DataFrame(group_rows), control)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(stimuli, out_dir / "stimuli.csv")
    write_csv_atomic(groups, out_dir / "episodes.csv")
    write_csv_atomic(pd.DataFrame(choice_rows), out_dir / "lineup_choices.csv")
    write_csv_atomic(exclusions, out_dir / "exclusions.csv")
    write_csv_atomic(answers, out_dir / "answers.csv")
    n_analysed = int(exclusions.loc[exclusions["reason"].eq("analysed"), "n_respondents"].iloc[0])
    summary = {
        "survey_id": design["survey_id"], "design_sha256": design["design_sha256"],
        "responses_sha256": hashlib.sha256(canonical_json(
            sorted(items, key=lambda r: r["response_id"]))).hexdigest(),
        "exclusions": dict(zip(exclusions["reason"], exclusions["n_respondents"].astype(int),
                               strict=True)),
        "k_foils": k, "chance": chance, "accepted_names": accepted,
        "control": {key: control[key] for key in ("n", "n_named", "named_rate",
                                                   "n_lineup_claimant", "lineup_rate")},
        "precision": precision, "required_n_per_cell": sample_size(precision),
        "achieved_half_width_worst_case": (Z95 * math.sqrt(0.25 / n_analysed)
                                           if n_analysed else None),
        "methods": {"interval": "Wilson score 95%", "net_of_control": "Newcombe hybrid score",
                    "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED,
                                  "kind": "percentile, respondents resampled"},
                    "exclusions": "incomplete, then failed attention check",
                    "sample_size": "z^2 p(1-p) / precision^2 at p = 0.5"},
    }
    write_json_atomic(out_dir / "summary.json", json.loads(json.dumps(summary, default=float)))
    rates_figure(stimuli, control, chance, out_dir / "figures" / "survey_rates")
    return summary
