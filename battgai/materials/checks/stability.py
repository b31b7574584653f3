"""Energies with a universal potential and energy above the convex hull against MP-20 phases.

How energies are referenced
---------------------------
Every energy here comes from one of two pretrained potentials, picked by the
``potential`` keyword (``POTENTIALS``): ``"chgnet"`` (the default; CHGNet 0.3,
weights bundled in the ``chgnet`` wheel) or ``"sevennet"`` (SevenNet-0,
11 Jul 2024, weights bundled in the ``sevenn`` wheel, loaded offline). Both are
trained on MPtrj, i.e. MP GGA/GGA+U total energies, but CHGNet learnt the
MP2020-corrected energies and SevenNet-0 the raw ones: SevenNet energies get
the MP2020 anion and GGA/GGA+U mixing corrections added here (pymatgen
``MaterialsProject2020Compatibility`` with the U values MP would have used for
that composition), which puts both on the scale of MP's corrected energies
(the DFT ``e_above_hull`` column; the two then agree to ~0.02 eV/atom on NaCl
and LiCoO2, against 0.3 and 0.75 eV/atom raw). Candidates and references
are always computed with the same potential (a :class:`ReferencePhases` holds one
potential and its own energy cache; mixing them would make E_hull meaningless):
references are the MP-20 structures (their DFT-relaxed geometry, *static*
energy, no relaxation) whose elements are a subset of the candidate's. Nine
metals have no elemental MP-20 phase (Al, Cr, Lu, Mo, Os, Pt, Th, V, Zn); their
textbook bcc / fcc / hcp structure, relaxed with the same potential, stands in.
Formation energies are per atom relative to the lowest-energy elemental MP-20
phase of each element, also with static energies of that potential (elements
carry no MP2020 correction). E_hull is the distance to the
lower hull of those references (pymatgen ``PhaseDiagram``). An element with no
elemental reference at all (e.g. noble gases, actinides beyond Th) makes E_hull
missing (NaN), not guessed.

References
----------
Deng et al., "CHGNet as a pretrained universal neural network potential for
charge-informed atomistic modelling", Nat. Mach. Intell. 5, 1031 (2023).
Park et al., "Scalable parallel algorithm for graph neural network interatomic
potentials in molecular dynamics simulations", J. Chem. Theory Comput. 20,
4857 (2024) (SevenNet).
Wang et al., "A framework for quantifying uncertainty in DFT energy
corrections", Sci. Rep. 11, 15496 (2021) (MP2020 corrections).
Ong et al., "Li-Fe-P-O2 phase diagram from first principles calculations",
Chem. Mater. 20, 1798 (2008) (convex hull construction).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from battgai.core.registry import REPO_ROOT

#: Pretrained potentials an energy can come from; ``"chgnet"`` is the default everywhere.
POTENTIALS = ("chgnet", "sevennet")
POTENTIAL_LABELS = {"chgnet": "CHGNet 0.3", "sevennet": "SevenNet-0"}
ENERGY_CACHE = REPO_ROOT / "runs" / "materials" / "chgnet_static_energies.json"
STABLE_EHULL = 0.1  # eV/atom, the MatterGen / DiffCSP "stable" threshold
Progress = Callable[[int, int], None]
_lock = threading.Lock()
# One SevenNet ASE calculator is shared; it keeps the last atoms and results, so one caller at a time.
_sevennet_lock = threading.Lock()


def check_potential(potential: str) -> None:
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {POTENTIALS}, got {potential!r}")


def energy_cache_path(potential: str = "chgnet"):
    """Where static reference energies of ``potential`` persist: ``runs/materials/<potential>_static_energies.json``."""
    check_potential(potential)
    return ENERGY_CACHE.with_name(f"{potential}_static_energies.json")


@functools.cache
def load_chgnet():
    """The bundled CHGNet model (offline; ~0.1 s), on :func:`battgai.core.device.get_device`."""
    import torch
    from chgnet.model import CHGNet

    from battgai.core.device import get_device

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Named, because CHGNet's own default follows CHGNET_DEVICE, not BATTGAI_DEVICE.
        return CHGNet.load(verbose=False, use_device=get_device())


@functools.cache
def load_sevennet():
    """The SevenNet-0 (11 Jul 2024) ASE calculator from the checkpoint bundled in ``sevenn`` (offline; ~5 s).

    The checkpoint is given by path, never by name, so a missing file is an
    error instead of a download.
    """
    from pathlib import Path

    import torch
    from sevenn import _const
    from sevenn.calculator import SevenNetCalculator

    from battgai.core.device import get_device

    torch.set_num_threads(1)
    checkpoint = Path(_const.SEVENNET_0_11Jul2024)
    if not checkpoint.exists():
        raise FileNotFoundError(f"SevenNet-0 checkpoint not bundled with sevenn at {checkpoint}")
    device = "cuda" if get_device().startswith("cuda") else "cpu"  # sevenn has no MPS path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tensor-product accelerator" notice on CPU
        return SevenNetCalculator(str(checkpoint), device=device)


@functools.cache
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def mp2020_correction(structure) -> float:
    """MP2020 anion + GGA/GGA+U mixing correction (eV/atom) MP would add to ``structure``'s raw DFT energy.

    The run is taken to be the one MP runs for that composition: GGA+U with
    MP's U values when it holds O or F and a U element (Co, Cr, Fe, Mn, Mo, Ni,
    V, W), else GGA. Elements get 0.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> round(mp2020_correction(nacl), 3)  # -0.614 eV per Cl anion
    -0.307
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    compat = _mp2020()
    comp = structure.composition
    anion = max(comp.elements, key=lambda el: el.X).symbol
    hubbards = {el: u for el, u in compat.u_settings.get(anion, {}).items() if el in comp}
    entry = ComputedStructureEntry(structure, 0.0, parameters={
        "run_type": "GGA+U" if hubbards else "GGA", "hubbards": hubbards})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "failed to guess oxidation states": MP's own fallback applies
        return sum(a.value for a in compat.get_adjustments(entry)) / len(structure)


@functools.cache
def _covered_numbers(potential: str) -> frozenset[int]:
    # Read from the loaded model, not a list: CHGNet embeds Z 1-94 (H-Pu); SevenNet-0 also lacks Po-Ra (84-88).
    if potential == "sevennet":
        return frozenset(load_sevennet().type_map)
    return frozenset(range(1, load_chgnet().atom_embedding.embedding.num_embeddings + 1))


def uncovered_elements(structure, potential: str = "chgnet") -> list[str]:
    """Elements of ``structure`` that ``potential`` has no parameters for, by atomic number.

    CHGNet 0.3 covers H to Pu (Z 1-94), SevenNet-0 the same less Po, At, Rn, Fr
    and Ra. The generator writes none beyond them, but an uploaded CIF may hold
    any element; neither potential can give such a crystal an energy: it gets
    none (NaN, or a :class:`RelaxationError`) instead of breaking its batch.
    ``uncovered_elements(AmO)`` is ``['Am']`` with either potential.
    """
    check_potential(potential)
    covered = _covered_numbers(potential)
    return [el.symbol for el in sorted(structure.composition.elements) if el.Z not in covered]


_COVERAGE = {"chgnet": "it covers H to Pu", "sevennet": "it covers H to Pu less Po, At, Rn, Fr, Ra"}


def no_parameters_message(missing: Sequence[str], potential: str) -> str:
    """Why a structure with ``missing`` elements (from :func:`uncovered_elements`) has no energy."""
    return f"{POTENTIAL_LABELS[potential]} has no parameters for {', '.join(missing)} ({_COVERAGE[potential]})"


#: Most atoms one relaxation takes on, checked before it starts. CHGNet's forces and stress need ~35 MB per atom
#: of a typical oxide, on one CPU core (LiCoO2 supercells: 48 atoms 1.7 GB and 2.5 s per step, 108 atoms 3.8 GB and
#: 4.4 s per step, 216 atoms ran out of 6 GB; 14 GB when unbounded); the generator's crystals have at most 20.
MAX_RELAX_ATOMS = 64
#: Three-atom angles (pairs of neighbours within CHGNet's 3 A three-body cutoff, summed over atoms) above which a
#: crystal gets no energy / no relaxation, checked before any work. Memory grows with them, ~28 kB each for an
#: energy and ~130 kB for a relaxation, and they grow with the square of the density, so a small crystal can be
#: the costly one: a structurally valid 2-atom cell at 0.26 A^3/atom has 420,000 and ran out of 5 GB for one static
#: energy, where 200 atoms of a typical oxide have ~55,000 (2 GB) and 64 atoms of LiCoO2 17,600.
MAX_ENERGY_ANGLES = 80_000
MAX_RELAX_ANGLES = 20_000


def _angles(structure) -> int:
    i, *_ = structure.get_neighbor_list(3.0)
    return int((np.bincount(i, minlength=len(structure)).astype(np.int64) ** 2).sum())


def energy_problem(structure, relax: bool = False) -> str | None:
    """Why ``structure`` is too big or too dense for an energy (``relax``: for a relaxation); None when it is not.

    Checked before any work starts, against :data:`MAX_RELAX_ATOMS` and
    :data:`MAX_ENERGY_ANGLES` / :data:`MAX_RELAX_ANGLES` (the memory the
    potential's graph needs grows with those angles; SevenNet, without three-body
    terms, needs less, but is held to the same bound).
    """
    if relax and len(structure) > MAX_RELAX_ATOMS:
        return (f"{len(structure)} atoms; a relaxation takes at most {MAX_RELAX_ATOMS} atoms per crystal (~35 MB "
                "per atom)")
    angles, limit = _angles(structure), MAX_RELAX_ANGLES if relax else MAX_ENERGY_ANGLES
    if angles > limit:
        return (f"its atoms are packed too densely for the potential ({structure.volume / len(structure):.2f} A^3 per "
                f"atom: {angles:,} three-atom angles within 3 A, the limit is {limit:,}, about "
                f"{limit * (130 if relax else 28) / 1e6:.1f} GB)")
    return None


def _sevennet_atoms(structure):
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = load_sevennet()
    return atoms


def static_energies(structures: Sequence, batch_size: int = 16, progress: Progress | None = None,
                    potential: str = "chgnet") -> np.ndarray:
    """Energy per atom (eV/atom) of each structure as given (no relaxation), with ``potential``.

    NaN for a structure with an element the potential lacks (:func:`uncovered_elements`)
    or one too dense for it (:func:`energy_problem`).
    """
    check_potential(potential)
    out = np.full(len(structures), np.nan)
    # A structure with an element the potential lacks stays NaN (CHGNet would fail its whole batch), and so does one
    # too big or too dense for the memory its graph would take (energy_problem).
    ok = [i for i, s in enumerate(structures) if not uncovered_elements(s, potential) and energy_problem(s) is None]
    if not ok:
        return out
    if potential == "sevennet":
        # Through ASE one structure at a time: the calculator has no batched call.
        for k, i in enumerate(ok):
            s = structures[i]
            with _sevennet_lock:
                out[i] = float(_sevennet_atoms(s).get_potential_energy()) / len(s) + mp2020_correction(s)
            if progress and ((k + 1) % batch_size == 0 or k + 1 == len(ok)):
                progress(k + 1, len(ok))
        return out
    model = load_chgnet()
    for k in range(0, len(ok), batch_size):
        idx = ok[k: k + batch_size]
        out[idx] = _chgnet_energies(model, [structures[i] for i in idx], batch_size)
        if progress:
            progress(min(k + batch_size, len(ok)), len(ok))
    return out


def _chgnet_energies(model, structures: list, batch_size: int) -> list[float]:
    # CHGNet refuses a whole batch when one structure has an atom without neighbours within 6 A (an
    # isolated atom); that structure gets NaN and the others their energies.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = model.predict_structure(structures, task="e", batch_size=batch_size)
    except ValueError:
        if len(structures) == 1:
            return [math.nan]
        return [e for s in structures for e in _chgnet_energies(model, [s], 1)]
    if isinstance(preds, dict):  # CHGNet returns a bare dict for a one-structure list
        preds = [preds]
    return [float(p["e"]) for p in preds]


#: A3 per atom below which a relaxation is stopped: no solid is that dense (diamond has 5.7), and a cell collapsing
#: towards it makes the potential's neighbour lists (6 A cutoff) grow without bound, to tens of GB.
MIN_RELAX_VOLUME_PER_ATOM = 2.0


class RelaxationError(ValueError):
    """A relaxation that had to be stopped (reason in the message)."""


#: Wall-clock limit of one relaxation (s): a page must not hang on one crystal (a 20-atom cell takes ~20 s).
RELAX_SECONDS = 120.0


def _guarded_filter(max_seconds: float):
    # FrechetCellFilter that refuses to evaluate a collapsed cell, or to go on past the time limit (checked
    # between force calls, so it works in any thread, unlike an alarm signal); ASE loads only when needed.
    from ase.filters import FrechetCellFilter

    deadline = time.monotonic() + max_seconds

    class Guarded(FrechetCellFilter):
        def get_forces(self, *args, **kwargs):
            per_atom = self.atoms.get_volume() / len(self.atoms)
            if per_atom < MIN_RELAX_VOLUME_PER_ATOM:
                raise RelaxationError(f"the cell collapsed to {per_atom:.2f} A^3/atom during relaxation")
            if time.monotonic() > deadline:
                raise RelaxationError(f"the relaxation ran past its {max_seconds:g} s limit")
            return super().get_forces(*args, **kwargs)

    return Guarded


def relax(structure, steps: int = 200, fmax: float = 0.1, potential: str = "chgnet",
          max_seconds: float = RELAX_SECONDS):
    """Relax cell + positions (ASE FIRE on a FrechetCellFilter) with ``potential``.

    Returns ``(structure, energy per atom)``, the energy of the last step
    evaluated (SevenNet's plus :func:`mp2020_correction`, as in
    :func:`static_energies`); stops at ``fmax`` (eV/A) or after ``steps`` steps. CHGNet goes
    through its own ``StructOptimizer`` (the same FIRE + FrechetCellFilter).
    About 5 s for a 10-atom cell on one CPU core.

    Raises
    ------
    RelaxationError
        The structure holds an element the potential lacks (:func:`uncovered_elements`),
        has too many atoms or too dense a packing (:func:`energy_problem`, checked
        before the relaxation starts), the cell collapsed below :data:`MIN_RELAX_VOLUME_PER_ATOM`, or the relaxation ran
        past ``max_seconds``.
    """
    check_potential(potential)
    if missing := uncovered_elements(structure, potential):
        raise RelaxationError(no_parameters_message(missing, potential))
    if problem := energy_problem(structure, relax=True):
        raise RelaxationError(problem)
    if potential == "sevennet":
        from ase.optimize import FIRE
        from pymatgen.io.ase import AseAtomsAdaptor

        with _sevennet_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = _sevennet_atoms(structure)
            FIRE(_guarded_filter(max_seconds)(atoms), logfile=None).run(fmax=fmax, steps=steps)
            energy = float(atoms.get_potential_energy()) / len(atoms)
        atoms.calc = None
        final = AseAtomsAdaptor.get_structure(atoms)
        return final, energy + mp2020_correction(final)

    from chgnet.model import StructOptimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_chgnet()
        # "error", as for static energies: the optimiser's default ("warn") would be set on the one shared model,
        # after which a static energy of a crystal with an isolated atom came out finite instead of NaN.
        opt = StructOptimizer(model=model, use_device=str(next(model.parameters()).device), on_isolated_atoms="error")
        try:
            r = opt.relax(structure, fmax=fmax, steps=steps, verbose=False, ase_filter=_guarded_filter(max_seconds))
        except ValueError as exc:
            if "isolated" not in str(exc).lower():
                raise
            raise RelaxationError("an atom has no neighbour within CHGNet's 6 A cutoff") from exc
    final = r["final_structure"]
    return final, float(r["trajectory"].energies[-1]) / len(final)


#: Textbook ground-state structures of metals without an elemental MP-20 phase: (lattice, a[, c]) in A.
ELEMENT_PROTOTYPES = {"Al": ("fcc", 4.05), "Cr": ("bcc", 2.91), "V": ("bcc", 3.03), "Mo": ("bcc", 3.15),
                      "Pt": ("fcc", 3.92), "Th": ("fcc", 5.08), "Zn": ("hcp", 2.66, 4.95),
                      "Lu": ("hcp", 3.50, 5.55), "Os": ("hcp", 2.73, 4.32)}


@functools.cache
def _element_prototype(el: str):
    from pymatgen.core import Lattice, Structure

    kind, a, *c = ELEMENT_PROTOTYPES[el]
    if kind == "bcc":
        return Structure(Lattice.cubic(a), [el] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    if kind == "fcc":
        return Structure(Lattice.cubic(a), [el] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Structure(Lattice.hexagonal(a, c[0]), [el] * 2, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


class EnergyCache:
    """Static energies of reference structures with one potential, keyed by material id, persisted as JSON.

    ``path`` defaults to :func:`energy_cache_path` of ``potential``; ``known`` are energies
    computed before with the same potential (the bundled ones), taken as they are.
    """

    def __init__(self, path=None, potential: str = "chgnet", known: Mapping[str, float] | None = None):
        check_potential(potential)
        self.potential = potential
        self.path = path if path is not None else energy_cache_path(potential)
        self.values: dict[str, float] = dict(known or {})
        if self.path.exists():
            self.values.update(json.loads(self.path.read_text()))

    def get_many(self, ids: Sequence[str], structures: Callable[[str], object],
                 progress: Progress | None = None) -> dict[str, float]:
        missing = [i for i in dict.fromkeys(ids) if i not in self.values]
        # Saved every 64 structures, so an interrupted run keeps what it computed.
        for k in range(0, len(missing), 64):
            chunk = missing[k: k + 64]
            e = static_energies([structures(i) for i in chunk], potential=self.potential)
            with _lock:
                self.values.update(zip(chunk, (float(x) for x in e), strict=True))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.values))
            if progress:
                progress(k + len(chunk), len(missing))
        return {i: self.values[i] for i in ids}


@dataclasses.dataclass(frozen=True)
class HullResult:
    e_above_hull: float  # eV/atom, NaN when no hull could be built
    formation_energy: float  # eV/atom vs elemental references, NaN without them
    n_references: int
    note: str = ""
    #: The known phases the hull puts at this composition: (reference id, fraction of the atoms).
    decomposition: tuple[tuple[str, float], ...] = ()
    #: The elemental phase each element's chemical potential comes from: (element, reference id).
    elemental: tuple[tuple[str, str], ...] = ()


class ReferencePhases:
    """MP-20 phases by chemical system, with their static energies from ``potential`` (computed once, cached).

    Candidate energies given to :meth:`hull` must come from the same potential.
    """

    def __init__(self, ids: Sequence[str], formulas: Sequence[str], cif_of: Callable[[str], str],
                 cache: EnergyCache | None = None, potential: str = "chgnet"):
        from pymatgen.core import Composition

        check_potential(potential)
        if cache is not None and cache.potential != potential:
            raise ValueError(f"energy cache holds {cache.potential} energies, references asked for {potential}")
        self.potential = potential
        self.ids = list(ids)
        self.comps = [Composition(f) for f in formulas]
        self.elsets = [frozenset(el.symbol for el in c.elements) for c in self.comps]
        self.cif_of = cif_of
        self.cache = cache or EnergyCache(potential=potential)

    @classmethod
    def from_mp20(cls, potential: str = "chgnet") -> ReferencePhases:
        """All MP-20 structures on hand (train and held-out: they are all known phases).

        Energies already in the bundle (:mod:`battgai.materials.checks.bundle`, CHGNet) are not computed again.
        """
        from battgai.materials.checks import bundle
        from battgai.materials.training.corpus import mp20_frame

        df = mp20_frame()
        cifs = df.set_index("material_id")["cif"]
        known = None
        if potential == "chgnet":
            try:
                known = bundle.load_references().values()
            except bundle.BundleError:
                known = None  # computed as needed, as before the bundle existed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # noble gases have no electronegativity for formula sorting
            return cls(df.material_id.tolist(), df.formula.tolist(), cifs.__getitem__, potential=potential,
                       cache=EnergyCache(potential=potential, known=known))

    @classmethod
    def from_bundle(cls) -> ReferencePhases:
        """The bundled MP-20 phases with their CHGNet energies: E_hull without the shared data.

        Raises :class:`battgai.materials.checks.bundle.BundleError` when the bundle is missing or altered.
        """
        from battgai.materials.checks import bundle

        refs = bundle.load_references()

        def no_structure(mid: str):
            raise bundle.BundleError(f"reference {mid} has no bundled energy and its structure is not bundled")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(refs.ids.tolist(), refs.formulas.tolist(), no_structure, potential=refs.potential,
                       cache=EnergyCache(potential=refs.potential, known=refs.values()))

    def _structure(self, mid: str):
        from battgai.materials.checks.validate import _parse_cif

        if mid.startswith("proto:"):
            return _element_prototype(mid.split(":")[1])
        return _parse_cif(self.cif_of(mid))

    def _add_missing_elements(self, elements: frozenset[str]) -> None:
        # MP-20 lacks elemental phases of a few metals (Al, Cr, V, Zn, Mo, ...): use their textbook
        # structure, relaxed with the references' potential, so those systems still get a hull.
        from pymatgen.core import Composition

        have = {next(iter(s)) for s in self.elsets if len(s) == 1}
        for el in sorted(elements - have):
            if el in ELEMENT_PROTOTYPES:
                mid = f"proto:{el}"
                if mid not in self.cache.values:
                    with _lock:
                        self.cache.values[mid] = relax(_element_prototype(el), steps=100,
                                                       potential=self.potential)[1]
                self.ids.append(mid)
                self.comps.append(Composition(el))
                self.elsets.append(frozenset([el]))

    def uncovered(self, elements: Iterable[str]) -> list[str]:
        """Elements no hull can be built for: no elemental phase (nor prototype), or no parameters of the potential."""
        from pymatgen.core import Element

        have = {next(iter(s)) for s in self.elsets if len(s) == 1} | set(ELEMENT_PROTOTYPES)
        covered = _covered_numbers(self.potential)
        return sorted(e for e in set(elements) if e not in have or Element(e).Z not in covered)

    def in_system(self, elements: frozenset[str], exclude: str | None = None) -> list[int]:
        return [i for i, s in enumerate(self.elsets) if s <= elements and self.ids[i] != exclude]

    def hull(self, composition, energy_per_atom: float, exclude: str | None = None,
             progress: Progress | None = None) -> HullResult:
        """E_hull and formation energy of ``composition`` at ``energy_per_atom`` (eV/atom, from ``self.potential``)."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        comp = Composition(composition)
        elements = frozenset(el.symbol for el in comp.elements)
        self._add_missing_elements(elements)
        idx = self.in_system(elements, exclude)
        energies = self.cache.get_many([self.ids[i] for i in idx], self._structure, progress)
        entries = [PDEntry(self.comps[i], energies[self.ids[i]] * self.comps[i].num_atoms, attribute=self.ids[i])
                   for i in idx]
        mu, mu_id = {}, {}
        for e in entries:
            if len(e.composition.elements) == 1 and np.isfinite(e.energy):
                el = e.composition.elements[0].symbol
                if e.energy_per_atom < mu.get(el, math.inf):
                    mu[el], mu_id[el] = e.energy_per_atom, e.attribute
        missing = sorted(elements - set(mu))
        if missing:
            return HullResult(math.nan, math.nan, len(entries),
                              f"no elemental MP-20 phase for {', '.join(missing)}")
        e_form = energy_per_atom - sum(comp.get_atomic_fraction(el) * mu[el.symbol] for el in comp.elements)
        pd = PhaseDiagram(entries)
        target = PDEntry(comp, energy_per_atom * comp.num_atoms)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decomp, ehull = pd.get_decomp_and_e_above_hull(target, allow_negative=True)
        return HullResult(float(ehull), float(e_form), len(entries),
                          decomposition=tuple((e.attribute, float(f)) for e, f in decomp.items()),
                          elemental=tuple(sorted(mu_id.items())))


@dataclasses.dataclass(frozen=True)
class HullValidation:
    """Static E_hull / formation-energy proxy vs the DFT columns of held-out MP-20 structures."""

    n: int
    ehull_mae: float  # eV/atom
    stable_f1: float  # stable = E_hull < STABLE_EHULL, proxy vs DFT
    stable_precision: float
    stable_recall: float
    eform_mae: float  # eV/atom, vs MP formation_energy_per_atom (which includes MP2020 corrections)
    n_missing: int  # structures without elemental references


def validate_hull_proxy(n: int = 200, seed: int = 0, progress: Progress | None = None,
                        potential: str = "chgnet") -> HullValidation:
    """Proxy E_hull on ``n`` random held-out MP-20 (binary/ternary) structures vs their DFT ``e_above_hull``.

    The structure itself is one of the references (as in the DFT column, whose
    hull includes it); its energy and all references are static energies from ``potential``.
    """
    from battgai.materials.training.corpus import is_heldout, mp20_frame

    df = mp20_frame().set_index("material_id")
    held = [i for i, r in df.iterrows()
            if r.mp20_split == "test" and is_heldout(i) and np.isfinite(r.e_above_hull)]
    rng = np.random.default_rng(seed)
    chosen = [held[i] for i in rng.permutation(len(held))[:n]]
    refs = ReferencePhases.from_mp20(potential)
    # A generator, so energies are computed one by one as the progress bar advances.
    items = (
        (refs._structure(mid).composition, refs.cache.get_many([mid], refs._structure)[mid],
         float(df.at[mid, "e_above_hull"]), float(df.at[mid, "formation_energy"]))
        for mid in chosen
    )
    return _score_against_dft(refs, items, len(chosen), progress)


def validate_hull_proxy_mpts(n_per_class: int = 100, seed: int = 0, max_atoms: int = 30,
                             progress: Progress | None = None, potential: str = "chgnet") -> HullValidation:
    """Proxy E_hull on MPTS-52 test structures (never trained on), stratified stable / unstable.

    MP-20 only holds structures within 0.08 eV/atom of the hull, so the F1 of
    "stable" is meaningless there; MPTS-52 (later MP entries) has 12 % above
    0.1 eV/atom. ``n_per_class`` structures with DFT E_hull < 0.1 and as many
    above are drawn (``seed``, <= ``max_atoms`` atoms). A structure below the
    MP-20 reference hull gets E_hull 0 (it would be on the hull once included,
    as in the DFT column).
    """
    import pandas as pd

    from battgai.core import data
    from battgai.materials.checks.validate import _parse_cif

    path = data.data_dir() / "materials" / "mpts_52" / "test.csv.gz"
    if not path.exists():
        raise data.DataNotFound(f"MPTS-52 not found at {path}")
    df = pd.read_csv(path, usecols=["material_id", "energy_above_hull", "formation_energy_per_atom", "cif"])
    rng = np.random.default_rng(seed)
    chosen = []
    for stable in (True, False):
        part = df[(df.energy_above_hull < STABLE_EHULL) == stable]
        picked = 0
        for i in rng.permutation(len(part)):
            s = _parse_cif(part.cif.iloc[i])
            if len(s) <= max_atoms:
                chosen.append((part.iloc[i], s))
                picked += 1
                if picked == n_per_class:
                    break
    refs = ReferencePhases.from_mp20(potential)
    energies = static_energies([s for _, s in chosen], potential=potential)
    items = (
        (s.composition, float(e), float(row.energy_above_hull), float(row.formation_energy_per_atom))
        for (row, s), e in zip(chosen, energies, strict=True)
    )
    return _score_against_dft(refs, items, len(chosen), progress)


def _score_against_dft(refs: ReferencePhases, items, n: int, progress: Progress | None) -> HullValidation:
    """Proxy E_hull and formation energy of ``items`` = (composition, energy per atom from ``refs.potential``,
    DFT E_hull, DFT formation energy) against the DFT columns."""
    pred, true, ef_pred, ef_true, missing = [], [], [], [], 0
    for k, (composition, energy, dft_ehull, dft_eform) in enumerate(items):
        h = refs.hull(composition, energy)
        if progress:
            progress(k + 1, n)
        if not np.isfinite(h.e_above_hull):
            missing += 1
            continue
        pred.append(max(h.e_above_hull, 0.0))
        true.append(dft_ehull)
        ef_pred.append(h.formation_energy)
        ef_true.append(dft_eform)
    return _hull_scores(np.array(pred), np.array(true), np.array(ef_pred), np.array(ef_true), missing)


def _hull_scores(pred, true, ef_pred, ef_true, missing: int) -> HullValidation:
    ps, ts = pred < STABLE_EHULL, true < STABLE_EHULL
    tp = float((ps & ts).sum())
    precision = tp / max(float(ps.sum()), 1.0)
    recall = tp / max(float(ts.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return HullValidation(len(pred), float(np.abs(pred - true).mean()), f1, precision, recall,
                          float(np.abs(ef_pred - ef_true).mean()), missing)
