"""Generate candidates and run every check on them: the one code path of the page and the CLI.

``generate`` samples token sequences, builds structures and runs the cheap
checks (validity, SMACT, uniqueness, novelty, symmetry); ``add_energies`` adds
the CHGNet checks (energy, E_hull, formation energy, voltage), which cost
~0.1-0.4 s per structure, so callers run them on demand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from battgai.materials import battery, validate
from battgai.materials import tokenizer as tk
from battgai.materials.sample import Conditions, LoadedModel, sample_tokens

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class Candidate:
    """One crystal and the results of its checks (NaN / None = not computed)."""

    structure: object  # pymatgen Structure
    source: str  # "generated" or "uploaded"
    spacegroup_asked: int | None
    spacegroup_found: int
    valid_structure: bool
    valid_smact: bool
    obeys_elements: bool
    unique: bool = True
    novel: bool | None = None
    e_per_atom: float = math.nan
    e_above_hull: float = math.nan
    formation_energy: float = math.nan
    voltage: float = math.nan
    capacity: float = math.nan
    relaxed: bool = False
    note: str = ""

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    def row(self) -> dict:
        """Flat record for tables and CSV files."""
        return {
            "formula": self.formula, "n_atoms": len(self.structure), "sg_asked": self.spacegroup_asked,
            "sg_found": self.spacegroup_found, "valid": self.valid_structure, "smact": self.valid_smact,
            "elements_ok": self.obeys_elements, "unique": self.unique, "novel": self.novel,
            "e_per_atom": self.e_per_atom, "e_above_hull": self.e_above_hull,
            "formation_energy": self.formation_energy, "voltage": self.voltage, "capacity_mAh_g": self.capacity,
            "relaxed": self.relaxed, "source": self.source, "note": self.note,
        }


class UniqueTracker:
    """Remembers structures seen so far (bucketed by reduced formula) to flag duplicates across batches."""

    def __init__(self):
        self.buckets: dict[str, list] = {}

    def add(self, structure) -> bool:
        """True when ``structure`` matches nothing seen before (and remember it)."""
        bucket = self.buckets.setdefault(structure.composition.reduced_formula, [])
        if any(validate._fit(structure, t) for t in bucket):
            return False
        bucket.append(structure)
        return True


def check(structure, conditions: Conditions, known: Mapping[str, Sequence] | None,
          spacegroup_asked: int | None = None, source: str = "generated",
          tracker: UniqueTracker | None = None) -> Candidate:
    """Run the cheap checks on one structure (generated or uploaded)."""
    els = {el.symbol for el in structure.composition.elements}
    required = set(conditions.required_elements) | ({conditions.working_ion} if conditions.working_ion else set())
    obeys = required <= els and (not conditions.allowed_elements or els <= set(conditions.allowed_elements))
    cand = Candidate(
        structure=structure, source=source, spacegroup_asked=spacegroup_asked,
        spacegroup_found=validate.spacegroup_found(structure),
        valid_structure=validate.structural_valid(structure),
        valid_smact=validate.smact_valid(structure.composition.element_composition.as_dict()),
        obeys_elements=obeys,
        novel=None if known is None else validate.is_novel(structure, known),
    )
    if tracker is not None:
        cand.unique = tracker.add(structure)
    if conditions.working_ion:
        cand.capacity = battery.capacity_grav(structure.composition, conditions.working_ion)
    return cand


def generate_batches(lm: LoadedModel, conditions: Conditions, n: int, seed: int = 0, batch_size: int = 100,
                     known: Mapping[str, Sequence] | None = None, tracker: UniqueTracker | None = None,
                     start_batch: int = 0) -> Iterator[tuple[int, list[Candidate], int]]:
    """Yield ``(batch index, candidates, failures)`` until ``n`` sequences were sampled.

    Batch ``b`` always uses seed ``seed * 1_000_003 + b``, so an interrupted run
    resumes exactly by passing ``start_batch``. Failures are sequences that hit a
    dead end or did not build into a crystal.
    """
    from battgai.materials.build import BuildError, to_structure

    tracker = tracker if tracker is not None else UniqueTracker()
    n_batches = math.ceil(n / batch_size)
    for b in range(start_batch, n_batches):
        size = min(batch_size, n - b * batch_size)
        tokens, ok = sample_tokens(lm, conditions, size, seed=seed * 1_000_003 + b)
        out, failed = [], 0
        for t, good in zip(tokens, ok, strict=True):
            if not good:
                failed += 1
                continue
            try:
                wc = tk.decode(t)
                s = to_structure(wc)
            except (tk.TokenizeError, BuildError):
                failed += 1
                continue
            out.append(check(s, conditions, known, wc.spacegroup, tracker=tracker))
        yield b, out, failed


def generate(lm: LoadedModel, conditions: Conditions, n: int, seed: int = 0, batch_size: int = 100,
             known: Mapping[str, Sequence] | None = None,
             progress: Progress | None = None) -> tuple[list[Candidate], int]:
    """Sample ``n`` crystals under ``conditions``; returns ``(candidates, failures)``."""
    cands, failed = [], 0
    for _, batch, f in generate_batches(lm, conditions, n, seed, batch_size, known):
        cands += batch
        failed += f
        if progress:
            progress(len(cands) + failed, n)
    return cands, failed


def add_energies(cands: Sequence[Candidate], refs, ion: str | None = None, relax: bool = False,
                 progress: Progress | None = None) -> None:
    """Fill CHGNet energy, E_hull, formation energy and (with ``ion``) voltage, in place.

    ``refs`` is a :class:`~battgai.materials.stability.ReferencePhases` (or None:
    energies only). With ``relax`` each structure is first relaxed with CHGNet.
    Invalid structures are skipped (their energy is meaningless).
    """
    from battgai.materials import stability

    todo = [c for c in cands if c.valid_structure]
    for k, c in enumerate(todo):
        if relax:
            c.structure, c.e_per_atom = stability.relax(c.structure)
            c.relaxed = True
            c.spacegroup_found = validate.spacegroup_found(c.structure)
        else:
            c.e_per_atom = float(stability.static_energies([c.structure])[0])
        if refs is not None:
            h = refs.hull(c.structure.composition, c.e_per_atom)
            c.e_above_hull, c.formation_energy = h.e_above_hull, h.formation_energy
            if h.note:
                c.note = h.note
        if ion:
            c.voltage = battery.candidate_voltage(c.structure, c.e_per_atom, ion)
        if progress:
            progress(k + 1, len(todo))
