"""How a crystal is judged, shared by the bench and the campaigns: stable, suspect, S.U.N.

Stable means an E_hull below :data:`~battgai.materials.stability.STABLE_EHULL` (0.1 eV/atom, the
MatterGen / DiffCSP threshold) against the MP-20 reference phases. A crystal more than
:data:`SUSPECT_BELOW_HULL` *below* that hull is suspect, never a win: of 100 relaxed crystals of
the bundled generator 14 landed there (AcGaPt -0.55, HgSe2 -0.29, ReF6 -0.20 eV/atom), SevenNet-0
agreed on 13 of 13 (both learnt MPtrj) and MPTS-52's phases changed no hull, so they are far likelier
holes of the potential or missing reference phases than discoveries. Suspect crystals are shown as
such and never counted as stable or S.U.N.
"""

from __future__ import annotations

import math

import numpy as np

#: eV/atom below the known hull beyond which a crystal is suspect rather than stable.
SUSPECT_BELOW_HULL = 0.05


def is_suspect(e_above_hull: float) -> bool:
    """True when ``e_above_hull`` lies more than :data:`SUSPECT_BELOW_HULL` below the known hull."""
    return bool(np.isfinite(e_above_hull) and e_above_hull < -SUSPECT_BELOW_HULL)


def is_stable(e_above_hull: float) -> bool:
    """Below the stability threshold and not suspect (NaN, no hull: not stable).

    Examples
    --------
    >>> is_stable(0.05), is_stable(-0.03), is_stable(-0.2), is_stable(float("nan"))
    (True, True, False, False)
    """
    from battgai.materials.stability import STABLE_EHULL

    return bool(np.isfinite(e_above_hull) and -SUSPECT_BELOW_HULL <= e_above_hull < STABLE_EHULL)


def verdict(e_above_hull: float) -> str:
    """One word for a table: "stable", "suspect", "unstable" or "no hull"."""
    if not np.isfinite(e_above_hull):
        return "no hull"
    if is_suspect(e_above_hull):
        return "suspect"
    return "stable" if is_stable(e_above_hull) else "unstable"


def rate(flags) -> float:
    """Share of true values (NaN for none)."""
    flags = list(flags)
    return sum(map(bool, flags)) / len(flags) if flags else math.nan
