"""Leave-group-out transfer on NASA: each temperature / current group in turn plays a researcher's lab.

For every group with two or more cells and every choice of one labelled cell in it, the other
groups are the source and the group's other cells are scored (never trained on), through
:func:`battgai.health.owncells.run`, the page's and the CLI's own path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from battgai.health.owncells import TRANSFER, TRANSFER_GEN, nasa_source_labs, run
from battgai.health.preprocess import CurveSet
from battgai.health.transfer import WINDOW_FRACTION


@dataclasses.dataclass
class GroupOutResult:
    """Per-run scores (one row per group x labelled cell x pipeline) and pooled estimate errors."""

    scores: pd.DataFrame
    errors: pd.DataFrame  # group, labelled, cell_id, err (SOH points), sigma (points), extrapolating

    def table(self) -> pd.DataFrame:
        """Pipeline x group: RMSE pooled over every scored curve of every run (SOH points)."""
        s = self.scores.assign(se=self.scores["rmse_soh_points"] ** 2 * self.scores["curves"],
                               be=self.scores["bias_soh_points"] * self.scores["curves"])
        g = s.groupby(["pipeline", "group"])[["se", "be", "curves"]].sum()
        out = np.sqrt(g["se"] / g["curves"]).unstack("group")
        allg = s.groupby("pipeline")[["se", "be", "curves"]].sum()
        out["all groups"] = np.sqrt(allg["se"] / allg["curves"])
        out["bias, all groups"] = allg["be"] / allg["curves"]
        return out

    def coverage(self) -> float:
        """Fraction of estimates whose error lies within two of their sigmas."""
        return float(np.mean(np.abs(self.errors["err"]) <= 2 * self.errors["sigma"]))


def leave_group_out(curves: CurveSet, window: tuple[float, float] = WINDOW_FRACTION, generator_steps: int = 0,
                    seed: int = 0, max_labelled: int | None = None) -> GroupOutResult:
    """Every group with >= 2 cells as the target lab, each of its cells (up to ``max_labelled``) as the labelled one."""
    labs = nasa_source_labs(curves)
    rows, errs = [], []
    for group, lab in labs.items():
        cells = list(map(str, np.unique(lab.cell_id)))
        if len(cells) < 2:
            continue
        source = {k: v for k, v in labs.items() if k != group}
        for labelled in cells[:max_labelled]:
            res = run(lab, [labelled], source, window, generator_steps, seed, source_name="NASA other groups")
            rows.append(res.scores.assign(group=group, labelled=labelled))
            e = res.estimates
            errs.append(pd.DataFrame({"group": group, "labelled": labelled, "cell_id": e["cell_id"],
                                      "err": (e["soh_estimate"] - e["soh_in_file"]) * 100,
                                      "sigma": e["soh_sigma"] * 100, "extrapolating": e["extrapolating"]}))
    return GroupOutResult(pd.concat(rows, ignore_index=True), pd.concat(errs, ignore_index=True))


def best_simple(table: pd.DataFrame) -> str:
    """The best pipeline trained on the labelled cells alone (with or without jitter / mixup)."""
    simple = [p for p in table.index if p.startswith("labelled")]
    return str(table.loc[simple, "all groups"].idxmin())


def report(curves: CurveSet, generator_steps: int, windows: tuple[tuple[float, float], ...]) -> tuple[list[str], dict]:
    """Markdown tables for each window, and the numbers the targets need (first window)."""
    lines = [
        "### Transfer to a lab's own cells (leave-group-out on NASA)", "",
        "NASA cells grouped by ambient temperature and discharge current as labs (cells that change current "
        "mid-life, B0038-B0040, left out). Each group with >= 2 cells in turn is the researcher's lab: one of its "
        "cells is labelled (all its cycles), the group's other cells are scored; the other groups are the source. "
        "Everything goes through `battgai.health.owncells.run`, the page's and the CLI's path: capacity relative to "
        "the labelled cell's first cycles, the window as fractions of the lab's own loaded voltage range, current "
        "as a C-rate, no temperature. RMSE and bias in SOH points, pooled over every scored curve of every run.", "",
    ]
    numbers: dict = {}
    for k, window in enumerate(windows):
        res = leave_group_out(curves, window, generator_steps if k == 0 else 0)
        t = res.table()
        groups = [c for c in t.columns if c not in ("all groups", "bias, all groups")]
        runs = res.scores.groupby("group")["labelled"].nunique()
        lines += [f"Window {window[0]:.0%} -> {window[1]:.0%} of the loaded voltage range; runs per group: "
                  + ", ".join(f"{g} {runs[g]}" for g in groups) + ".", "",
                  "| pipeline | " + " | ".join(groups) + " | all groups | bias, all groups |",
                  "|---|" + "---|" * (len(groups) + 2)]
        for p, r in t.sort_values("all groups").iterrows():
            lines.append(f"| {p} | " + " | ".join(f"{r[g]:.2f}" for g in groups) +
                         f" | {r['all groups']:.2f} | {r['bias, all groups']:+.2f} |")
        main = TRANSFER_GEN if TRANSFER_GEN in t.index else TRANSFER
        lines += ["", f"Uncertainty of `{main}`: {res.coverage():.0%} of estimates within 2 sigma; "
                  f"{res.errors['extrapolating'].mean():.0%} flagged as extrapolating.", ""]
        if k == 0:
            numbers = {"table": t, "best_simple": best_simple(t), "main": main, "coverage": res.coverage()}
    return lines, numbers
