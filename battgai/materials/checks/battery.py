"""Battery metrics of an insertion electrode: theoretical capacity and average voltage.

References
----------
Aydinol et al., "Ab initio study of lithium intercalation in metal oxides and
metal dichalcogenides", Phys. Rev. B 56, 1354 (1997) (average voltage from
total energies). Jain et al., "The Materials Project", APL Mater. 1, 011002
(2013) (capacity and voltage conventions of the battery explorer).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

FARADAY = 96485.33212  # C/mol
#: Charge of the working ion in the electrolyte.
ION_CHARGE = {"Li": 1, "Na": 1, "K": 1, "Rb": 1, "Cs": 1, "Mg": 2, "Zn": 2, "Ca": 2, "Al": 3, "Y": 3}
#: Metal of each working ion as prototype lattice (structure, lattice constants in A), relaxed with the potential.
_METALS = {"Li": ("bcc", 3.44), "Na": ("bcc", 4.23), "K": ("bcc", 5.23), "Rb": ("bcc", 5.59),
           "Cs": ("bcc", 6.05), "Mg": ("hcp", 3.21, 5.21), "Zn": ("hcp", 2.66, 4.95),
           "Ca": ("fcc", 5.58), "Al": ("fcc", 4.05), "Y": ("hcp", 3.65, 5.73)}


def _check_ion(ion: str) -> None:
    if ion not in ION_CHARGE:
        raise ValueError(f"working ion must be one of {sorted(ION_CHARGE)}, got {ion!r}")


def capacity_grav(composition, ion: str) -> float:
    """Theoretical gravimetric capacity (mAh/g) from removing every ``ion`` of ``composition``.

    ``z * n_ion * F / (3.6 * M)`` with ``M`` the molar mass of the ion-filled
    (discharged) formula, the Materials Project convention for fully
    de-intercalated frameworks.

    Examples
    --------
    >>> round(capacity_grav("LiCoO2", "Li"))
    274
    """
    from pymatgen.core import Composition

    _check_ion(ion)
    comp = Composition(composition)
    n = comp[ion]
    if n == 0:
        return 0.0
    return ION_CHARGE[ion] * n * FARADAY / (3.6 * float(comp.weight))


def average_voltage(comp_low, e_low: float, comp_high, e_high: float, ion: str, mu_ion: float) -> float:
    """Average voltage (V vs the ion's metal) between two states of one framework.

    Parameters
    ----------
    comp_low, comp_high : Composition or str
        Discharged (more ion) and charged (less ion) compositions of the same framework.
    e_low, e_high : float
        Energies per atom (eV/atom) of the two states, from the same method.
    ion : str
        Working ion; ``mu_ion`` is the energy per atom of its metal (same method).

    Returns
    -------
    float
        ``-(E_low - E_high - x mu_ion) / (z x)`` per framework unit, ``x`` the ions inserted.
    """
    from pymatgen.core import Composition

    _check_ion(ion)
    low, high = Composition(comp_low), Composition(comp_high)
    frame_low = sum(v for el, v in low.items() if el.symbol != ion)
    frame_high = sum(v for el, v in high.items() if el.symbol != ion)
    if frame_low == 0 or frame_high == 0:
        raise ValueError("both states need framework atoms besides the ion")
    scale = frame_high / frame_low  # express the discharged state per charged-state framework unit
    x = low[ion] * scale - high[ion]
    if x <= 0:
        raise ValueError(f"the discharged state must hold more {ion} than the charged one")
    de = e_low * low.num_atoms * scale - e_high * high.num_atoms - x * mu_ion
    return -de / (ION_CHARGE[ion] * x)


@functools.cache
def metal_energy(ion: str, potential: str = "chgnet") -> float:
    """Energy per atom (eV/atom) of the elemental metal of ``ion`` relaxed with ``potential`` (see
    :data:`~battgai.materials.checks.stability.POTENTIALS`)."""
    from pymatgen.core import Lattice, Structure

    from battgai.materials.checks.stability import relax

    _check_ion(ion)
    kind, a, *c = _METALS[ion]
    if kind == "bcc":
        s = Structure(Lattice.cubic(a), [ion] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    elif kind == "fcc":
        s = Structure(Lattice.cubic(a), [ion] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    else:
        s = Structure(Lattice.hexagonal(a, c[0]), [ion] * 2, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    return relax(s, steps=100, potential=potential)[1]


def remove_ion(structure, ion: str):
    """The framework left when every ``ion`` site is removed (geometry unrelaxed)."""
    s = structure.copy()
    s.remove_species([ion])
    return s


def candidate_voltage(structure, e_full: float, ion: str, potential: str = "chgnet") -> float:
    """Average voltage of fully removing ``ion`` from ``structure`` with static energies of ``potential``.

    ``e_full`` is the energy per atom of ``structure`` from the same potential;
    the ion-removed framework keeps its geometry (static energy, no relaxation),
    which tends to overestimate the voltage; the metal is relaxed with the same
    potential. NaN when the structure holds no ``ion`` or nothing else.
    """
    from battgai.materials.checks.stability import static_energies

    return candidate_voltages([structure], [e_full], ion,
                              lambda frames: static_energies(frames, potential=potential), potential)[0]


def candidate_voltages(structures: Sequence, e_full: Sequence[float], ion: str,
                       energies: Callable[[list], list[float]], potential: str = "chgnet") -> list[float]:
    """:func:`candidate_voltage` of many crystals, every framework's static energy from one call of ``energies``
    (a campaign passes its Ray workers'; the same potential as ``e_full``); NaN where undefined."""
    mu = metal_energy(ion, potential)
    todo = [k for k, (s, e) in enumerate(zip(structures, e_full, strict=True))
            if math.isfinite(e) and 0 < s.composition[ion] < s.composition.num_atoms]
    frames = [remove_ion(structures[k], ion) for k in todo]
    out = [math.nan] * len(structures)
    for k, frame, e_frame in zip(todo, frames, energies(frames) if frames else [], strict=True):
        if math.isfinite(e_frame):
            out[k] = average_voltage(structures[k].composition, e_full[k], frame.composition, float(e_frame), ion,
                                     mu)
    return out


@dataclasses.dataclass(frozen=True)
class VoltageValidation:
    """Static voltage proxy vs DFT average voltage on insertion-electrode pairs."""

    n_pairs: int
    mae: float  # V
    median_abs_error: float  # V
    mae_by_ion: dict[str, float]
    capacity_match: float  # fraction of fully de-intercalated pairs whose MP capacity the formula gives to 1 mAh/g
    capacity_pairs: int
    skipped: int


def validate_voltage_proxy(n: int = 100, seed: int = 0, max_atoms: int = 40,
                           ions: tuple[str, ...] = ("Li", "Na", "K", "Mg", "Zn"),
                           progress=None, potential: str = "chgnet") -> VoltageValidation:
    """MAE of :func:`average_voltage` with static energies of ``potential`` on ``n`` random MP pairs.

    Both states are the DFT-relaxed MP structures, energies are static
    predictions (no relaxation), the ion reference is the metal relaxed with the
    same potential (CHGNet by default).
    Pairs are drawn at random (``seed``) among those with <= ``max_atoms`` atoms per state.
    """
    from pathlib import Path

    import numpy as np
    from pymatgen.core import Composition

    from battgai.core.registry import REPO_ROOT
    from battgai.materials.checks.stability import EnergyCache
    from battgai.materials.checks.validate import _parse_cif
    from battgai.materials.training.corpus import electrode_pairs

    pairs = electrode_pairs()
    pairs = pairs[pairs.ion.isin(ions)]
    rng = np.random.default_rng(seed)
    pairs = pairs.iloc[rng.permutation(len(pairs))]
    cache = EnergyCache(Path(REPO_ROOT / "runs" / "materials" / f"{potential}_electrode_energies.json"), potential)
    chosen, skipped = [], 0
    for r in pairs.itertuples():
        hi, lo = _parse_cif(r.high_cif), _parse_cif(r.low_cif)
        if len(hi) > max_atoms or len(lo) > max_atoms:
            skipped += 1
            continue
        chosen.append((r, hi, lo))
        if len(chosen) == n:
            break
    structs = {}
    for r, hi, lo in chosen:
        structs[r.high_mpid], structs[r.low_mpid] = hi, lo
    energies = cache.get_many(list(structs), structs.__getitem__, progress)
    errs, by_ion = [], {}
    for r, hi, lo in chosen:
        v = average_voltage(lo.composition, energies[r.low_mpid], hi.composition, energies[r.high_mpid],
                            r.ion, metal_energy(r.ion, potential))
        errs.append(abs(v - r.average_voltage))
        by_ion.setdefault(r.ion, []).append(errs[-1])
    # Capacity needs no energies: check the formula on every fully de-intercalated pair. Multi-step
    # electrodes, whose MP capacity spans the whole voltage profile, are the expected misses.
    full = pairs[[Composition(f)[ion] == 0 for f, ion in zip(pairs.high_formula, pairs.ion, strict=True)]]
    cap_ok = [abs(capacity_grav(f, ion) - c) < 1.0
              for f, ion, c in zip(full.low_formula, full.ion, full.capacity_grav, strict=True)]
    return VoltageValidation(len(errs), float(np.mean(errs)), float(np.median(errs)),
                             {k: float(np.mean(v)) for k, v in by_ion.items()},
                             float(np.mean(cap_ok)), len(cap_ok), skipped)


def known_electrodes(ion: str):
    """The Materials Project insertion electrodes of ``ion`` on hand (shared data): a DataFrame of
    ``formula`` (discharged), ``voltage`` (average, V) and ``capacity`` (gravimetric, mAh/g), one row per pair.

    Raises :class:`battgai.core.data.DataNotFound` without the shared data.
    """
    from battgai.materials.training.corpus import electrode_pairs

    pairs = electrode_pairs()
    pairs = pairs[pairs.ion == ion]
    return pairs.rename(columns={"low_formula": "formula", "average_voltage": "voltage",
                                 "capacity_grav": "capacity"})[["formula", "voltage", "capacity"]]
