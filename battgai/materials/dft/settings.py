"""How a DFT energy is computed: the presets and the Materials Project's per-structure choices.

Every choice that makes an energy comparable with MP's is MP's own, read from pymatgen's
``MPRelaxSet`` configuration rather than copied here: PBE; spin-polarised with MP's initial moments
when a magnetic element is present; +U on the d states of Co, Cr, Fe, Mn, Mo, Ni, V and W when the
structure holds O or F (MP's U values). Everything else (plane-wave cutoff, k-point density,
smearing, convergence, limits) belongs to a :class:`Preset` and is written into each result's
provenance.

References
----------
Jain et al., "Formation enthalpies by mixing GGA and GGA+U calculations", Phys. Rev. B 84, 045115
(2011) (MP's U values and the mixing scheme).
Mortensen et al., "GPAW: An open Python package for electronic structure calculations",
J. Chem. Phys. 160, 092503 (2024).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

#: Initial moment (mu_B) MP gives an element without one of its own.
DEFAULT_MAGMOM = 0.6


@dataclasses.dataclass(frozen=True)
class Preset:
    """Numerical settings of one kind of DFT run, the same for a crystal and its reference phases.

    ``kpoint_density`` is k-points per reciprocal-space length (1/A, ASE's ``density``);
    ``scf_energy`` is GPAW's energy convergence (eV per valence electron); ``smearing`` the
    Fermi-Dirac width (eV; GPAW reports the energy extrapolated to zero width).
    ``relax`` adds a DFT relaxation of cell and positions (to ``fmax`` eV/A, at most
    ``relax_steps`` steps) to crystals that were not relaxed by DFT before.
    """

    name: str
    ecut: float  # eV
    kpoint_density: float
    smearing: float
    scf_energy: float
    max_scf: int
    relax: bool
    max_atoms: int
    max_seconds: float  # wall-clock limit of one calculation (one crystal, relaxation included)
    fmax: float = 0.05
    relax_steps: int = 40

    def provenance(self) -> dict:
        return {"code": "GPAW", "xc": "PBE", "mode": "plane waves", **dataclasses.asdict(self)}

    @property
    def key(self) -> str:
        """Names the numbers an energy depends on, so cached energies are reused only under the same ones."""
        return (f"{self.name}-pw{self.ecut:g}-k{self.kpoint_density:g}-fd{self.smearing:g}-"
                f"scf{self.scf_energy:g}-relax{int(self.relax)}")


#: "screen": a single point at 400 eV, k-density 3 (a 4-atom intermetallic in 25-40 s on one core);
#: "accurate": MP's 520 eV cutoff, denser k-points and a DFT relaxation.
PRESETS: Mapping[str, Preset] = {
    "screen": Preset("screen", ecut=400.0, kpoint_density=3.0, smearing=0.05, scf_energy=5e-4, max_scf=80,
                     relax=False, max_atoms=16, max_seconds=1800.0),
    "accurate": Preset("accurate", ecut=520.0, kpoint_density=4.0, smearing=0.05, scf_energy=1e-4, max_scf=120,
                       relax=True, max_atoms=12, max_seconds=7200.0),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"DFT preset must be one of {sorted(PRESETS)}, got {name!r}") from None


@functools.cache
def _mp_incar() -> Mapping:
    from pymatgen.io.vasp.sets import MPRelaxSet

    return MPRelaxSet.CONFIG["INCAR"]


@functools.cache
def _mp_moment_entries() -> dict[str, list[tuple[str, float]]]:
    entries: dict[str, list[tuple[str, float]]] = {}
    for key, value in _mp_incar()["MAGMOM"].items():
        entries.setdefault(re.match(r"[A-Z][a-z]?", key).group(), []).append((key, float(value)))
    return entries


@functools.cache
def mp_magmoms() -> dict[str, float]:
    """MP's initial moment per element (mu_B): its own entry, else its first ion's, else :data:`DEFAULT_MAGMOM`."""
    return {el: dict(found).get(el, found[0][1]) for el, found in _mp_moment_entries().items()}


def magnetic_elements(structure) -> list[str]:
    """Elements of ``structure`` MP gives a moment above its default in some charge state: they make a run
    spin-polarised (Co counts: 0.6 as an element, 1 as Co4+; La and Lu do not: 0.6 in every entry)."""
    entries = _mp_moment_entries()
    return sorted(el.symbol for el in structure.composition.elements
                  if max((v for _, v in entries.get(el.symbol, [])), default=DEFAULT_MAGMOM) > DEFAULT_MAGMOM)


def hubbard_u(structure) -> dict[str, float]:
    """MP's U (eV, on d states) for each element of ``structure`` that gets one: {} unless it holds O or F.

    MP keys its U values by the most electronegative element, and only O and F have them.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> feo = Structure(Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> hubbard_u(feo)
    {'Fe': 5.3}
    """
    comp = structure.composition
    anion = max(comp.elements, key=lambda el: el.X).symbol
    table = _mp_incar()["LDAUU"].get(anion, {})
    return {el.symbol: float(table[el.symbol]) for el in sorted(comp.elements) if table.get(el.symbol, 0) > 0}


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What MP would do for one structure: spin and +U (the preset holds the numbers)."""

    spin_polarised: bool
    magnetic: tuple[str, ...]
    hubbard: Mapping[str, float]

    @property
    def run_type(self) -> str:
        return "GGA+U" if self.hubbard else "GGA"

    def describe(self) -> str:
        parts = ["PBE"]
        if self.hubbard:
            parts.append("+U " + ", ".join(f"{el} {u:g} eV" for el, u in self.hubbard.items()))
        parts.append(f"spin-polarised ({', '.join(self.magnetic)})" if self.spin_polarised else "spin-paired")
        return "; ".join(parts)


def run_settings(structure) -> RunSettings:
    magnetic = magnetic_elements(structure)
    return RunSettings(bool(magnetic), tuple(magnetic), hubbard_u(structure))
