"""One DFT energy with GPAW: limits checked before the work, a clear error for everything that stops it.

GPAW runs in the calling process, on one core (a campaign or a page spreads crystals over the
engine's workers instead: :mod:`battgai.materials.dft.verify`). Its PAW setups come with the pinned
``gpaw-data`` package, so nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from battgai.materials.dft.settings import DEFAULT_MAGMOM, Preset, mp_magmoms, run_settings

#: Called after every SCF iteration with (iteration, seconds so far); whatever it raises stops the calculation.
StepCallback = Callable[[int, float], None]


class DFTError(RuntimeError):
    """A DFT calculation that cannot run or did not finish; ``kind`` names which, the message says why.

    Kinds: ``no_setup``, ``too_many_atoms``, ``not_converged``, ``time_limit``, ``interrupted``,
    ``no_reference`` (a phase of the decomposition cannot be computed), ``unavailable`` (GPAW missing).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # so a worker's error reaches the page whole
        return DFTError, (self.kind, str(self))


@dataclasses.dataclass(frozen=True)
class DFTEnergy:
    """The DFT energy of one structure and everything it depends on.

    ``energy_per_atom`` is GPAW's total energy per atom (eV, relative to GPAW's atomic references, so only
    differences between structures computed the same way mean anything) plus ``correction``, the MP2020
    anion and mixing correction MP would add for this run type.
    """

    formula: str
    n_atoms: int
    energy_per_atom: float
    raw_energy_per_atom: float
    correction: float
    run_type: str  # "GGA" or "GGA+U"
    hubbard: dict[str, float]
    spin_polarised: bool
    magnetic_moment: float  # mu_B per cell
    scf_iterations: int
    seconds: float
    preset: str  # Preset.key
    relaxed: bool  # relaxed with DFT here

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.cache
def available_setups() -> frozenset[str]:
    """Elements with a PBE PAW setup in the installed ``gpaw-data`` (empty when it is not installed)."""
    try:
        import gpaw_data
    except ModuleNotFoundError:
        return frozenset()
    return frozenset(p.name.split(".")[0] for p in Path(gpaw_data.datapath()).glob("*.PBE*")
                     if p.name.split(".")[1] == "PBE")


def problem(structure, preset: Preset) -> DFTError | None:
    """Why ``structure`` cannot be computed with ``preset`` (checked before any work), or None."""
    missing = sorted({el.symbol for el in structure.composition.elements} - available_setups())
    if not available_setups():
        return DFTError("unavailable", "GPAW's PAW setups (the gpaw-data package) are not installed; "
                                       "run `make install`")
    if missing:
        return DFTError("no_setup", f"no PBE PAW setup for {', '.join(missing)} in gpaw-data "
                                    "(GPAW's standard set has none for Tc, Po, At, Fr, Ra and the actinides)")
    if len(structure) > preset.max_atoms:
        return DFTError("too_many_atoms", f"{structure.composition.reduced_formula} has {len(structure)} atoms in "
                                          f"its primitive cell; the {preset.name} preset takes at most "
                                          f"{preset.max_atoms} (cost grows with the cube of the atom count: an "
                                          "18-atom cell takes about 12 min on one core)")
    return None


def primitive(structure):
    """The primitive cell (same energy per atom, fewer atoms to compute)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return structure.get_primitive_structure(tolerance=0.01)


def _calculator(structure, preset: Preset, on_step: Callable[[object], None]):
    from gpaw import GPAW, PW

    settings = run_settings(structure)
    calc = GPAW(mode=PW(preset.ecut), xc="PBE", kpts={"density": preset.kpoint_density, "gamma": True},
                occupations={"name": "fermi-dirac", "width": preset.smearing},
                convergence={"energy": preset.scf_energy}, maxiter=preset.max_scf,
                setups={el: f":d,{u}" for el, u in settings.hubbard.items()}, txt=None)
    calc.hooks["scf_step"] = on_step
    return calc, settings


def compute(structure, preset: Preset, on_step: StepCallback | None = None) -> tuple[DFTEnergy, object]:
    """DFT energy of ``structure`` (its primitive cell) with ``preset``: ``(DFTEnergy, final structure)``.

    With ``preset.relax`` cell and positions are relaxed first (ASE BFGS on a FrechetCellFilter).

    Raises
    ------
    DFTError
        Before any work for a missing setup or too many atoms (:func:`problem`); during it when the
        SCF does not converge within ``preset.max_scf`` iterations, when the calculation runs past
        ``preset.max_seconds``, or when ``on_step`` raises (kind ``interrupted``; the original
        exception is its cause).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from battgai.materials.checks.stability import mp2020_correction

    structure = primitive(structure)
    if (err := problem(structure, preset)) is not None:
        raise err
    start = time.monotonic()
    iterations = 0

    def step(ctx) -> None:
        nonlocal iterations
        iterations += 1
        seconds = time.monotonic() - start
        if seconds > preset.max_seconds:
            raise DFTError("time_limit", f"{structure.composition.reduced_formula} ran past the {preset.name} "
                                         f"preset's {preset.max_seconds:g} s limit ({iterations} SCF iterations)")
        if on_step is not None:
            try:
                on_step(iterations, seconds)
            except Exception as exc:
                raise DFTError("interrupted", f"{structure.composition.reduced_formula}: interrupted "
                                              f"({type(exc).__name__}); nothing was stored") from exc

    atoms = AseAtomsAdaptor.get_atoms(structure)
    calc, settings = _calculator(structure, preset, step)
    if settings.spin_polarised:
        moments = mp_magmoms()
        atoms.set_initial_magnetic_moments([moments.get(s, DEFAULT_MAGMOM) for s in atoms.get_chemical_symbols()])
    atoms.calc = calc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "symmetrized grid", "k-points not as symmetric as the crystal"
            if preset.relax:
                _relax(atoms, preset)
            energy = float(atoms.get_potential_energy()) / len(atoms)
            moment = float(atoms.get_magnetic_moment()) if settings.spin_polarised else 0.0
    except DFTError:
        raise
    except Exception as exc:
        from gpaw import ConvergenceError

        if isinstance(exc, ConvergenceError):
            raise DFTError("not_converged", f"{structure.composition.reduced_formula}: the SCF did not converge in "
                                            f"{preset.max_scf} iterations ({settings.describe()}; "
                                            f"{preset.key})") from exc
        raise
    final = AseAtomsAdaptor.get_structure(atoms) if preset.relax else structure
    correction = mp2020_correction(final)
    result = DFTEnergy(
        formula=final.composition.reduced_formula, n_atoms=len(final), energy_per_atom=energy + correction,
        raw_energy_per_atom=energy, correction=correction, run_type=settings.run_type, hubbard=dict(settings.hubbard),
        spin_polarised=settings.spin_polarised, magnetic_moment=moment, scf_iterations=iterations,
        seconds=round(time.monotonic() - start, 2), preset=preset.key, relaxed=preset.relax)
    return result, final


def _relax(atoms, preset: Preset) -> None:
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=preset.fmax, steps=preset.relax_steps)
