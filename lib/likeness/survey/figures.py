"""The survey's figure: recognition and lineup rates per stimulus with their intervals."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from likeness.figures import H1_COLOUR, H2_COLOUR, save, style


def rates_figure(stimuli: pd.DataFrame, control: dict, chance: float,
                 stem: Path | str) -> list[Path]:
    """Bars of the named-the-claimant rate and the lineup identification rate per stimulus
    (Wilson 95% intervals), with chance 1/(k+1) and the pooled control rates as lines."""
    with style():
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(stimuli) + 2), 4.2))
        x = np.arange(len(stimuli))
        width = 0.38
        for offset, measure, colour, hatch, label in (
                (-width / 2, "named", H1_COLOUR, "", "named the claimant (open question)"),
                (width / 2, "lineup", H2_COLOUR, "//", "picked the claimant (lineup)")):
            rate = stimuli[f"{measure}_rate"].to_numpy(float)
            lo = rate - stimuli[f"{measure}_lo"].to_numpy(float)
            hi = stimuli[f"{measure}_hi"].to_numpy(float) - rate
            ax.bar(x + offset, rate, width, color=colour, hatch=hatch, label=label,
                   edgecolor="black", linewidth=0.5,
                   yerr=np.clip(np.nan_to_num([lo, hi]), 0, None), capsize=3)
        ax.axhline(chance, color="black", linestyle=":", linewidth=1.2,
                   label=f"lineup chance 1/(k+1) = {chance:.2f}")
        if control["n"]:
            ax.axhline(control["lineup_rate"], color=H2_COLOUR, linestyle="--", linewidth=1.2,
                       label=f"lineup, pooled controls = {control['lineup_rate']:.2f}")
            ax.axhline(control["named_rate"], color=H1_COLOUR, linestyle="-.", linewidth=1.2,
                       label=f"named, pooled controls = {control['named_rate']:.2f}")
        ax.set_xticks(x, [f"{r.stimulus}\n{r.group}\n{r.role}" for r in stimuli.itertuples()],
                      fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of analysed respondents")
        ax.set_title("Recognition of the claimant per stimulus (Wilson 95% intervals)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return save(fig, stem)
