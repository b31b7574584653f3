"""A guard that keeps reward fine-tuning near the training chemistry: element and density histograms.

A policy rewarded by CHGNet's E_hull alone drifted to the potential's favourite chemistry (rare-earth and
heavy-metal intermetallics: density 7.60 g/cm^3 against 6.67 held out, DESIGN.md). The guard compares
each batch with the training crystals that obey the same element conditions:

- element presence: the share of crystals holding each element, ``p_e`` in the batch and ``q_e`` in the
  reference;
- density: the share of crystals in each density bin, ``p_b`` and ``q_b``.

Each crystal's reward is lowered by ``weight * (mean over its elements of log(p_e / q_e) + log(p_b / q_b))``
(clipped to +-:data:`CLIP`). That is the policy-gradient form of a penalty ``weight * KL(batch || reference)``
on both histograms: crystals of over-represented elements or densities lose reward, under-represented ones
gain it, so the batch histograms are pulled toward the training set's while the reward pulls toward finds.
:meth:`DistributionGuard.distances` measures the result (element total variation, density Wasserstein-1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

#: Density bin edges (g/cm^3): 0.5 g/cm^3 wide up to 12, one open bin above.
DENSITY_EDGES = np.append(np.arange(0.0, 12.01, 0.5), np.inf)
#: Densities above this (g/cm^3) are collapsed cells, left out of the Wasserstein distance.
MAX_DENSITY = 30.0
#: Pseudo-count added to every histogram share, so an element the batch or the reference lacks stays finite.
SMOOTH = 0.01
#: Largest penalty (or bonus) one crystal gets, so a single rare element cannot dominate a batch's advantages.
CLIP = 2.0


@dataclasses.dataclass(frozen=True)
class DistributionGuard:
    """Reference element shares and density histogram of the training crystals under the conditions."""

    elements: dict[str, float]  # share of reference crystals holding each element
    density_hist: np.ndarray  # share of reference crystals per DENSITY_EDGES bin
    densities: np.ndarray  # reference densities (g/cm^3), for the Wasserstein distance
    n_reference: int
    weight: float = 0.5

    @classmethod
    def from_structures(cls, structures: Sequence, weight: float = 0.5) -> DistributionGuard:
        if not structures:
            raise ValueError("the guard needs reference crystals: no training crystal obeys these conditions")
        counts: dict[str, int] = {}
        for s in structures:
            for el in {e.symbol for e in s.composition.elements}:
                counts[el] = counts.get(el, 0) + 1
        dens = np.array([float(s.density) for s in structures])
        return cls({el: c / len(structures) for el, c in counts.items()}, _hist(dens), dens, len(structures), weight)

    def penalty(self, structures: Sequence) -> np.ndarray:
        """Per-crystal penalty (0 for None: a crystal that did not build earns nothing anyway)."""
        built = [s for s in structures if s is not None]
        out = np.zeros(len(structures))
        if not built or self.weight == 0:
            return out
        els = [{e.symbol for e in s.composition.elements} for s in built]
        share = {el: sum(el in e for e in els) / len(built) for el in set().union(*els)}
        dens = np.array([float(s.density) for s in built])
        p_b = _hist(dens)
        k = 0
        for i, s in enumerate(structures):
            if s is None:
                continue
            el_term = np.mean([math.log((share[el] + SMOOTH) / (self.elements.get(el, 0.0) + SMOOTH))
                               for el in els[k]])
            b = _bin(dens[k])
            d_term = math.log((p_b[b] + SMOOTH) / (self.density_hist[b] + SMOOTH))
            out[i] = float(np.clip(self.weight * (el_term + d_term), -CLIP, CLIP))
            k += 1
        return out

    def distances(self, structures: Iterable) -> dict[str, float]:
        """How far ``structures`` are from the reference: element-share total variation and density W1."""
        from scipy.stats import wasserstein_distance

        built = [s for s in structures if s is not None]
        if not built:
            return {"element_tv": math.nan, "density_w1": math.nan}
        els = [{e.symbol for e in s.composition.elements} for s in built]
        names = set(self.elements).union(*els)
        share = {el: sum(el in e for e in els) / len(built) for el in names}
        tv = 0.5 * sum(abs(share[el] - self.elements.get(el, 0.0)) for el in names)
        dens = [float(s.density) for s in built]
        # No crystal is denser than osmium (22.6 g/cm^3): a denser one is a collapsed cell, which would
        # dominate a Wasserstein distance; it is already in the histogram's open top bin.
        w1 = wasserstein_distance([d for d in dens if d <= MAX_DENSITY] or [math.nan], self.densities)
        return {"element_tv": float(tv), "density_w1": float(w1)}


def _bin(density: float) -> int:
    return int(np.clip(np.searchsorted(DENSITY_EDGES, density, side="right") - 1, 0, len(DENSITY_EDGES) - 2))


def _hist(dens: np.ndarray) -> np.ndarray:
    h = np.zeros(len(DENSITY_EDGES) - 1)
    for d in dens:
        h[_bin(d)] += 1
    return h / max(len(dens), 1)


def reference_structures(index, allowed: Iterable[str] = (), required: Iterable[str] = ()) -> list:
    """The crystals of ``index`` (e.g. the known phases' training view) whose elements obey the conditions."""
    from pymatgen.core import Composition

    allowed, required = set(allowed), set(required)
    out = []
    for formula in index:
        els = {e.symbol for e in Composition(formula).elements}
        if required <= els and (not allowed or els <= allowed):
            out.extend(index[formula])
    return out


def guard_for(conditions, weight: float = 0.5) -> DistributionGuard | None:
    """The guard for sampling under ``conditions``: the training crystals (the known phases' training view) that
    obey its allowed and required elements (the working ion counts as required); ``None`` when none does."""
    from battgai.materials.checks.references import known_phases

    index = known_phases()[0]
    if index is None or weight == 0:
        return None
    required = {*conditions.required_elements, *([conditions.working_ion] if conditions.working_ion else [])}
    ref = reference_structures(index.training(), conditions.allowed_elements, required)
    return DistributionGuard.from_structures(ref, weight) if ref else None
