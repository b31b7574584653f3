"""Pick the pipeline a run uses from errors it can measure without the scored cells' labels.

A transfer from other labs can lose to the labelled cells alone (on the per-cycle feature sets it
does, by 2-5x), so no pipeline is the default everywhere. Each run scores every candidate on
cells it holds out of what it has, and uses the lowest RMSE:

- with two or more labelled cells, each labelled cell in turn is left out and scored
  (leave-one-labelled-cell-out): the researcher's own lab, the closest check there is;
- with one labelled cell, each source group with two or more cells plays the researcher's lab in
  turn (one of its cells labelled, its other cells scored, the other groups the source):
  leave-source-group-out, the setting the run itself is in.

The cells the run estimates are never among those held out, so their labels (where a file has
them) cannot steer the pick.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Group name of the leave-one-labelled-cell-out errors (the other groups are source groups).
LABELLED_GROUP = "labelled cells"


@dataclasses.dataclass(frozen=True)
class Pick:
    """The pipeline a run uses, and the held-out numbers it was picked on."""

    pipeline: str
    rmse: dict[str, float]  # candidate -> held-out RMSE, SOH points (relative to each lab's first capacity)
    basis: str  # what was held out
    curves: int  # held-out curves each candidate was scored on

    def reason(self) -> str:
        """One sentence a researcher reads next to the estimates: which pipeline, on what, with which numbers."""
        if not self.rmse:
            return f"Pipeline used: {self.pipeline}, unchecked ({self.basis})."
        ranked = sorted(self.rmse.items(), key=lambda kv: kv[1])
        return (f"Pipeline used: {self.pipeline}, the lowest held-out RMSE on {self.basis} ({self.curves} curves, "
                "SOH points): " + "; ".join(f"{k} {v:.2f}" for k, v in ranked) + ".")


def pick(errors: dict[str, dict[str, np.ndarray]], default: str) -> Pick:
    """The candidate with the lowest held-out RMSE; ``default`` when nothing could be held out.

    Parameters
    ----------
    errors : dict
        Candidate -> group -> held-out errors (estimate - label, relative SOH). Group
        :data:`LABELLED_GROUP` holds leave-one-labelled-cell-out errors, every other group a
        source group's leave-group-out errors. Only the labelled cells' group is used when it is
        there (the researcher's own lab); otherwise the source groups, pooled per curve.
    default : str
        The pipeline used, unchecked, when no candidate has a held-out error (one labelled cell,
        no source group with two cells).

    Returns
    -------
    Pick
        Ties go to the candidate listed first in ``errors``.
    """
    groups = {g for per in errors.values() for g, e in per.items() if len(e)}
    if not groups:
        return Pick(default, {}, "one labelled cell and no source group with two cells: nothing to hold out", 0)
    use = [LABELLED_GROUP] if LABELLED_GROUP in groups else sorted(groups)
    rmse, curves = {}, 0
    for name, per in errors.items():
        e = np.concatenate([per[g] for g in use if g in per] or [np.zeros(0)])
        if not len(e) or not np.isfinite(e).all():
            continue  # a candidate that could not be scored on every held-out curve is not compared
        rmse[name], curves = float(np.sqrt(np.mean(e**2)) * 100), max(curves, len(e))
    if not rmse:
        raise ValueError("no candidate pipeline has finite held-out errors to pick on")
    basis = "leave-one-labelled-cell-out" if use == [LABELLED_GROUP] else f"leave-source-group-out ({', '.join(use)})"
    return Pick(min(rmse, key=rmse.get), rmse, basis, curves)
