"""The ENFSI (2015) verbal scale of likelihood ratios."""

from __future__ import annotations

import pandas as pd

# Verbal equivalents of likelihood ratios: ENFSI Guideline for Evaluative Reporting in
# Forensic Science (2015), p. 17. Rows: lower bound of log10 LR (inclusive), upper bound
# (exclusive), the verbal equivalent for the proposition the LR supports.
VERBAL_SCALE = (
    (0.0, 1.0, "weak support"),  # LR 1 (exclusive) to 10
    (1.0, 2.0, "moderate support"),  # 10 to 100
    (2.0, 3.0, "moderately strong support"),  # 100 to 1,000
    (3.0, 4.0, "strong support"),  # 1,000 to 10,000
    (4.0, 6.0, "very strong support"),  # 10,000 to 1,000,000
    (6.0, float("inf"), "extremely strong support"),  # 1,000,000 and above
)
# |log10 LR| below this is reported as 'no support for either proposition' (LR about 1).
NEUTRAL_LOG10_LR = 0.05


def verbal_equivalent(log10_lr: float) -> str:
    """ENFSI (2015) verbal equivalent of a log10 LR, naming the proposition it supports."""
    if log10_lr is None or not pd.notna(log10_lr):
        return "no likelihood ratio"
    value = float(log10_lr)
    if abs(value) < NEUTRAL_LOG10_LR:
        return "no support for either proposition (LR about 1)"
    magnitude = abs(value)
    words = next(w for lo, hi, w in VERBAL_SCALE if lo <= magnitude < hi)
    return f"{words} for {'H1' if value > 0 else 'H2'}"


def verbal_scale_table() -> pd.DataFrame:
    """The ENFSI (2015) scale as a table: LR range, log10 LR range, verbal equivalent."""
    rows = [{"likelihood ratio": "about 1", "log10 LR": "about 0",
             "verbal equivalent": "the findings support neither proposition"}]
    for lo, hi, words in VERBAL_SCALE:
        lr_hi = "and above" if hi == float("inf") else f"to {10 ** hi:,.0f}"
        lr_lo = "above 1" if lo == 0 else f"{10 ** lo:,.0f}"
        log_hi = "and above" if hi == float("inf") else f"to {hi:g}"
        rows.append({
            "likelihood ratio": f"{lr_lo} {lr_hi}",
            "log10 LR": f"{lo:g} {log_hi}",
            "verbal equivalent": f"{words} for H1 over H2",
        })
    return pd.DataFrame(rows)




# The bands the findings count episodes in: the ENFSI scale's boundaries at LR 1, 10 and 100,
# with everything from 100 up in one band (rows: lower log10 LR inclusive, upper exclusive,
# name, the verbal equivalents it spans). An episode with no face has no LR and no band.
STRENGTH_BANDS = (
    (2.0, float("inf"), "LR 100 or more", "moderately strong support for H1 or stronger"),
    (1.0, 2.0, "LR 10 to 100", "moderate support for H1"),
    (0.0, 1.0, "LR 1 to 10", "weak support for H1, or none (LR about 1)"),
    (float("-inf"), 0.0, "LR below 1", "support for H2 (weak or stronger), or none"),
)
NO_BAND = "no likelihood ratio (no face analysed, or no calibration)"


def strength_band(log10_lr: float | None) -> str:
    """The name of the strength band a log10 LR falls in (``NO_BAND`` for a missing LR)."""
    if log10_lr is None or not pd.notna(log10_lr):
        return NO_BAND
    return next(name for lo, hi, name, _ in STRENGTH_BANDS if lo <= float(log10_lr) < hi)


def band_counts(values: pd.Series, labels: pd.Series) -> pd.DataFrame:
    """How many of ``values`` (log10 LRs, labelled by ``labels``) fall in each strength band,
    strongest band first; every band is listed, also when empty."""
    bands = [strength_band(v) for v in values]
    rows = []
    for name, words in [(b[2], b[3]) for b in STRENGTH_BANDS] + [(NO_BAND, "")]:
        members = [str(label) for label, band in zip(labels, bands, strict=True) if band == name]
        if name == NO_BAND and not members:
            continue
        rows.append({"strength band": name, "verbal equivalents": words,
                     "episodes": len(members), "which": ", ".join(members) or "–"})
    return pd.DataFrame(rows)
