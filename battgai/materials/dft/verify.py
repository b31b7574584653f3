"""Check crystals with DFT: the potential's relaxation and hull pick the phases, DFT judges.

For each crystal: relax it with the project's potential (as campaigns do; ``as_given`` skips this
for structures DFT relaxed already), find the known phases its hull decomposes it into and the
elemental phases, compute the crystal and every such phase with the same DFT preset (the phases
once, then from the :class:`~battgai.materials.dft.store.DFTStore`), and compare
(:mod:`battgai.materials.dft.hull`). The calculations of a call are spread over ``workers`` Ray
workers of the engine (``BATTGAI_ENGINE=inline``: one after another in this process).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from battgai.materials.dft import hull
from battgai.materials.dft.calculator import DFTEnergy, DFTError, compute, primitive, problem
from battgai.materials.dft.settings import Preset, get_preset

#: eV/atom below the phases named under which a DFT E_hull is taken as level with them, not below (the screen
#: preset's SCF tolerance moves energies by a few meV per atom).
BELOW_NOISE = 0.005
#: Called with (calculations done, calculations in all, what runs now).
Progress = Callable[[int, int, str], None]
#: Runs :func:`calc_task` on each structure with the preset somewhere else (a campaign's Ray actors), in order.
Runner = Callable[[list, Preset], list[tuple]]


@dataclasses.dataclass(frozen=True)
class DFTCheck:
    """One crystal's DFT check beside the potential's numbers (NaN: not computed or not comparable)."""

    formula: str
    structure: object  # the structure DFT computed (primitive; relaxed by the potential unless as given)
    geometry: str  # how it was obtained, e.g. "relaxed with chgnet", "as given"
    e_above_hull_potential: float
    e_above_hull: float  # DFT, against the decomposition below
    formation_energy: float  # DFT, against the elemental phases
    verdict: str  # one of hull.VERDICTS
    note: str
    decomposition: tuple[tuple[str, str, float], ...]  # (reference id, formula, fraction of the atoms)
    crystal: DFTEnergy | None
    phases: dict[str, DFTEnergy]  # every reference energy used, by id
    preset: str
    potential: str
    error: str = ""  # why there is no DFT result (verdict "failed")

    def row(self) -> dict:
        """Flat record for tables, CSV and ``verify --json``."""
        return {"formula": self.formula, "verdict": self.verdict,
                "e_above_hull": self.e_above_hull_potential, "e_above_hull_dft": self.e_above_hull,
                "formation_energy_dft": self.formation_energy,
                "decomposition": " + ".join(f"{f:.3g} {formula} ({rid})" for rid, formula, f in self.decomposition),
                "run_type": self.crystal.run_type if self.crystal else "",
                "dft_seconds": self.crystal.seconds if self.crystal else math.nan,
                "geometry": self.geometry, "preset": self.preset, "potential": self.potential,
                "note": self.note or self.error}


@dataclasses.dataclass
class _Plan:
    structure: object
    geometry: str
    e_hull_potential: float
    decomposition: tuple[tuple[str, float], ...] = ()
    elemental: tuple[tuple[str, str], ...] = ()
    error: str = ""


def calc_task(structure, preset: Preset) -> tuple[DFTEnergy | None, object, str]:
    """``(DFTEnergy or None, final structure, error)``: a DFTError comes back as a value, so the others go on."""
    # Rebuilt, not used as received: a structure Ray hands a worker holds read-only arrays, which pymatgen's
    # compiled distance code (the MP2020 oxide check) refuses.
    structure = type(structure).from_dict(structure.as_dict())
    try:
        energy, final = compute(structure, preset)
    except DFTError as exc:
        return None, structure, str(exc)
    return energy, final, ""


def _run_all(tasks: dict[str, object], preset: Preset, workers: int, progress: Progress | None,
             labels: dict[str, str], on_done: Callable[[str, tuple], None], runner: Runner | None) -> dict[str, tuple]:
    """Run every calculation: key -> (DFTEnergy or None, final structure, error); ``on_done`` sees each as it ends."""
    from battgai.core import engine

    out: dict[str, tuple] = {}
    keys = list(tasks)
    if runner is not None:
        for key, result in zip(keys, runner([tasks[k] for k in keys], preset), strict=True):
            out[key] = result
            on_done(key, result)
        return out
    if workers <= 1 or engine.mode() == "inline":
        for k, key in enumerate(keys):
            def step(iteration: int, seconds: float, k: int = k, key: str = key) -> None:
                if progress:
                    progress(k, len(keys), f"{labels[key]}: SCF iteration {iteration}, {seconds:.0f} s")

            if progress:
                progress(k, len(keys), labels[key])
            try:
                energy, final = compute(tasks[key], preset, on_step=step)
                out[key] = (energy, final, "")
            except DFTError as exc:
                if exc.kind == "interrupted":
                    raise
                out[key] = (None, tasks[key], str(exc))
            on_done(key, out[key])
        return out
    import ray

    engine.ensure_connected()
    remote = ray.remote(num_cpus=1, max_retries=0)(calc_task)
    pending: dict = {}
    queue = list(keys)
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                key = queue.pop(0)
                pending[remote.remote(tasks[key], preset)] = key
            if progress:
                progress(len(out), len(keys), ", ".join(labels[k] for k in pending.values()))
            done, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(done[0])
            out[key] = ray.get(done[0])
            on_done(key, out[key])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return out


def _plan(structure, as_given: bool, refs, potential: str, exclude: str | None, preset: Preset,
          given_as: str) -> _Plan:
    from battgai.materials.checks import stability

    structure = primitive(structure)
    if (err := problem(structure, preset)) is not None:
        return _Plan(structure, "", math.nan, error=str(err))
    if as_given:
        energy, geometry = float(stability.static_energies([structure], potential=potential)[0]), given_as
    else:
        try:
            structure, energy = stability.relax(structure, potential=potential)
        except stability.RelaxationError as exc:
            return _Plan(structure, "", math.nan, error=f"not relaxed with {potential}: {exc}")
        structure, geometry = primitive(structure), f"relaxed with {potential}"
    if not math.isfinite(energy):
        return _Plan(structure, geometry, math.nan, error=f"no {potential} energy, so no decomposition to compare with")
    h = refs.hull(structure.composition, energy, exclude=exclude)
    if not h.decomposition:
        return _Plan(structure, geometry, math.nan, error=f"no hull: {h.note or 'no reference phases'}")
    return _Plan(structure, geometry, h.e_above_hull, h.decomposition, h.elemental)


def verify(structures: Sequence, preset: str | Preset = "screen", *, refs=None, as_given: bool = False,
           potential: str = "chgnet", exclude: Sequence[str | None] | None = None, workers: int = 1,
           store=None, progress: Progress | None = None, runner: Runner | None = None,
           given_as: str = "as given") -> list[DFTCheck]:
    """DFT check of each of ``structures`` (pymatgen), in order.

    Parameters
    ----------
    refs : ReferencePhases, optional
        The known phases with the potential's energies (default: those in use,
        :func:`~battgai.materials.checks.references.reference_phases`). Their structures must be on hand
        (the shared MP-20 data) for DFT to compute them.
    as_given : bool
        Skip the potential's relaxation (structures already relaxed by DFT, or by the potential before:
        ``given_as`` then says how, for the result's ``geometry``).
    exclude : sequence of str or None
        Per structure, a reference id to leave out of its hull (a known phase checked against the others).
    workers : int
        Calculations run at once on the engine's Ray workers.
    runner : callable, optional
        Runs the calculations instead (a campaign's actors, which hold the cluster's CPUs).

    A crystal that cannot be checked (no setup, too many atoms, a reference beyond the atom limit, an
    SCF that does not converge, a time limit) gets verdict "failed" and the reason, never a number.
    """
    from battgai.materials.checks.bundle import BundleError
    from battgai.materials.checks.references import reference_phases
    from battgai.materials.dft.store import DFTStore

    preset = get_preset(preset) if isinstance(preset, str) else preset
    if refs is None:
        refs, line = reference_phases(potential)
        if refs is None:
            raise DFTError("no_reference", line)
    store = store or DFTStore(preset)
    exclude = list(exclude) if exclude is not None else [None] * len(structures)
    plans = [_plan(s, as_given, refs, potential, x, preset, given_as) for s, x in zip(structures, exclude, strict=True)]

    stored = store.all()  # read once: the store is one JSON file
    tasks, labels, ref_structures = {}, {}, {}
    for k, p in enumerate(plans):
        if p.error:
            continue
        needed = [rid for rid, _ in p.decomposition] + [rid for _, rid in p.elemental]
        for rid in dict.fromkeys(needed):
            if rid in stored or rid in ref_structures:
                continue
            try:
                s = primitive(refs._structure(rid))
            except BundleError:
                p.error = (f"the decomposition needs {rid}, whose structure is not bundled (only its CHGNet energy "
                           "is): DFT of reference phases needs the shared MP-20 data (BATTGAI_DATA_DIR)")
                break
            ref_structures[rid] = s
        if p.error:
            continue
        for rid, _ in p.decomposition:
            if rid in ref_structures and (err := problem(ref_structures[rid], preset)) is not None:
                p.error = f"the decomposition needs {rid}: {err}"
                break
        if not p.error:
            tasks[f"crystal:{k}"], labels[f"crystal:{k}"] = p.structure, p.structure.composition.reduced_formula
    for rid, s in ref_structures.items():
        needed_by_hull = any(rid in dict(p.decomposition) for p in plans if not p.error)
        needed_by_form = any(rid in dict(p.elemental).values() for p in plans if not p.error)
        if (needed_by_hull or needed_by_form) and problem(s, preset) is None:
            tasks[rid], labels[rid] = s, f"{s.composition.reduced_formula} ({rid})"

    def keep(key: str, result: tuple) -> None:  # a finished reference is kept even if the run is stopped later
        if key in ref_structures and result[0] is not None:
            store.put(key, result[0])

    results = _run_all(tasks, preset, workers, progress, labels, keep, runner)
    stored = store.all()  # with what this call added
    return [_check(k, p, results, stored, preset, potential) for k, p in enumerate(plans)]


def _check(k: int, p: _Plan, results: dict, stored: dict[str, DFTEnergy], preset: Preset,
           potential: str) -> DFTCheck:
    formula = p.structure.composition.reduced_formula
    base = dict(formula=formula, structure=p.structure, geometry=p.geometry,
                e_above_hull_potential=p.e_hull_potential, preset=preset.key, potential=potential)
    failed = dict(e_above_hull=math.nan, formation_energy=math.nan, verdict="failed", note="", decomposition=(),
                  crystal=None, phases={})
    if p.error:
        return DFTCheck(**base, **failed, error=p.error)
    crystal, final, error = results[f"crystal:{k}"]
    if crystal is None:
        return DFTCheck(**base, **failed, error=error)
    phases: dict[str, DFTEnergy] = {}
    for rid, _ in p.decomposition:
        if rid not in stored:
            return DFTCheck(**base, **failed, error=f"reference {rid}: {results.get(rid, (None, None, '?'))[2]}")
        phases[rid] = stored[rid]
    elemental = {el: stored[rid] for el, rid in p.elemental if rid in stored}
    phases.update({rid: stored[rid] for el, rid in p.elemental if el in elemental})
    formulas = {rid: phases[rid].formula for rid, _ in p.decomposition}
    decomposition = tuple((rid, formulas[rid], f) for rid, f in p.decomposition)
    mixing = hull.mixing_problem([crystal, *(phases[rid] for rid, _ in p.decomposition)])
    e_hull = math.nan if mixing else hull.e_above_hull(crystal, [(f, phases[rid]) for rid, f in p.decomposition])
    form_mixing = hull.mixing_problem([crystal, *elemental.values()])
    e_form = math.nan if form_mixing else hull.formation_energy(crystal, elemental)
    notes = []
    if mixing:
        notes.append(f"not comparable: {mixing}")
    elif e_hull < -BELOW_NOISE:
        notes.append(f"DFT also puts it {-e_hull:.3f} eV/atom below the known phases "
                     f"({' + '.join(formulas[rid] for rid, _ in p.decomposition)}): a likely missing reference "
                     "phase or a real find")
    if not mixing and form_mixing:
        notes.append(f"no formation energy: {form_mixing}")
    elif not math.isfinite(e_form) and not mixing:
        notes.append("no formation energy: an elemental phase is beyond the preset's limits")
    return DFTCheck(**{**base, "structure": final}, e_above_hull=e_hull, formation_energy=e_form,
                    verdict=hull.verdict(e_hull, mixing), note="; ".join(notes), decomposition=decomposition,
                    crystal=crystal, phases=phases)


def verify_job(structures: Sequence, preset: str, *, as_given: bool = False, potential: str = "chgnet",
               workers: int = 2, progress: Progress | None = None) -> list[dict]:
    """:func:`verify` against the references in use, as table rows: what the page runs in the engine."""
    return [c.row() for c in verify(structures, preset, as_given=as_given, potential=potential, workers=workers,
                                    progress=progress)]
