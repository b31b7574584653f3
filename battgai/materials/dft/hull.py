"""DFT E_hull and formation energy from energies already computed, and the verdict they give.

The crystal is compared with the phases the potential's hull decomposes it into, each recomputed
with DFT under the same settings. A fixed decomposition can only overestimate the DFT hull's energy
at that composition (the hull is the lowest combination of *all* phases), so the E_hull here is a
lower bound of the one a complete DFT hull would give: "refuted" is definitive, "confirmed" holds
against the phases named.

Energies are comparable when every phase holding a U element (Co, Cr, Fe, Mn, Mo, Ni, V, W) was run
the same way: all with +U (oxides, fluorides) or all without. MP2020 mixes the two with corrections
fitted to VASP, not to this code, so a +U oxide against a metallic phase is "not comparable", with
the reason, never a number. The MP2020 anion corrections are in every energy (they cancel in E_hull
except between oxide, peroxide and superoxide; they matter in formation energies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from battgai.materials.checks.stability import STABLE_EHULL
from battgai.materials.dft.calculator import DFTEnergy

VERDICTS = ("confirmed", "refuted", "not comparable", "failed")


def _elements(formula: str) -> set[str]:
    from pymatgen.core import Composition

    return {el.symbol for el in Composition(formula).elements}


def mixing_problem(energies: Sequence[DFTEnergy]) -> str | None:
    """Why ``energies`` cannot be compared (a U element run with and without +U), or None."""
    u_elements = {el for e in energies for el in e.hubbard}
    for el in sorted(u_elements):
        with_u = sorted({e.formula for e in energies if el in e.hubbard})
        without = sorted({e.formula for e in energies if el in _elements(e.formula) and el not in e.hubbard})
        if without:
            return (f"{', '.join(with_u)} runs with +U on {el} (oxide or fluoride), {', '.join(without)} without "
                    "(MP's GGA/GGA+U mixing corrections are fitted to VASP, not to GPAW)")
    return None


def e_above_hull(crystal: DFTEnergy, decomposition: Sequence[tuple[float, DFTEnergy]]) -> float:
    """``crystal``'s energy above ``decomposition`` = (fraction of the atoms, phase energy), eV/atom."""
    return crystal.energy_per_atom - sum(f * e.energy_per_atom for f, e in decomposition)


def formation_energy(crystal: DFTEnergy, elemental: Mapping[str, DFTEnergy]) -> float:
    """Formation energy per atom against the elemental phases (NaN when one is missing)."""
    from pymatgen.core import Composition

    comp = Composition(crystal.formula)
    if any(el.symbol not in elemental for el in comp.elements):
        return math.nan
    return crystal.energy_per_atom - sum(comp.get_atomic_fraction(el) * elemental[el.symbol].energy_per_atom
                                         for el in comp.elements)


def verdict(e_hull: float, problem: str | None) -> str:
    """"confirmed" (DFT E_hull <= 0.1 eV/atom), "refuted", or "not comparable"."""
    if problem is not None or not math.isfinite(e_hull):
        return "not comparable"
    return "confirmed" if e_hull <= STABLE_EHULL else "refuted"
