"""Generate candidates and run every check on them: the one code path of the page and the CLI.

``generate`` samples token sequences, builds structures (rejecting and
resampling invalid, overlapping or non-neutral ones unless asked not to) and runs
the cheap checks (validity, closest contact, SMACT, uniqueness, novelty, symmetry); ``add_energies`` adds
the interatomic-potential checks (CHGNet or SevenNet-0: energy, E_hull,
formation energy, voltage), which cost ~0.1-5 s per structure, so callers run
them on demand.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from battgai.materials.checks import battery, validate
from battgai.materials.generation import tokenizer as tk
from battgai.materials.generation.sample import Conditions, LoadedModel, sample_tokens

Progress = Callable[[int, int], None]
#: Resampling rounds per batch that draw just the batch's shortfall. Releases up to 0.5.1 stopped after these
#: rounds, so one required element (1 crystal in 8 or 9 passing) came back 38-47 of 50; a batch they filled is
#: drawn the same way now and gets the same crystals.
SHORTFALL_ROUNDS = 16
#: Most sequences a batch draws per crystal it needs (its size times ``oversample``); a batch that reaches it stops
#: short and the tally says why (:meth:`Tally.shortfall_reason`). One required element needs about 9 per crystal
#: (1.6 unconstrained); 24 leaves room for 1 in 20 passing and bounds a request whose crystals almost never pass at
#: 15 times the time of an unconstrained one. Not below SHORTFALL_ROUNDS, whose rounds may draw that many.
MAX_SAMPLED_PER_CANDIDATE = 24


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
    contact_ratio: float = math.nan  # closest pair of atoms over the sum of their radii (validate.contact_ratio)
    unique: bool = True
    novel: bool | None = None  # matches no structure of the index it was checked against (None = not checked)
    known_match: str = ""  # the known phase it matches, when it is not new
    e_per_atom: float = math.nan
    e_above_hull: float = math.nan
    formation_energy: float = math.nan
    voltage: float = math.nan
    capacity: float = math.nan
    relaxed: bool = False
    potential: str = ""  # the interatomic potential behind the energies ("" = none computed)
    note: str = ""

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    def row(self) -> dict:
        """Flat record for tables and CSV files."""
        return {
            "formula": self.formula, "n_atoms": len(self.structure), "sg_asked": self.spacegroup_asked,
            "sg_found": self.spacegroup_found, "valid": self.valid_structure, "contact_ratio": self.contact_ratio,
            "smact": self.valid_smact,
            "elements_ok": self.obeys_elements, "unique": self.unique, "new": self.novel,
            "matches_known": self.known_match,
            "e_per_atom": self.e_per_atom, "e_above_hull": self.e_above_hull,
            "formation_energy": self.formation_energy, "voltage": self.voltage, "capacity_mAh_g": self.capacity,
            "relaxed": self.relaxed, "potential": self.potential, "source": self.source, "note": self.note,
        }


class UniqueTracker:
    """Remembers structures seen so far (bucketed by reduced formula) to flag duplicates across batches."""

    def __init__(self):
        self.buckets: dict[str, list] = {}

    def __len__(self) -> int:
        return sum(map(len, self.buckets.values()))

    def add(self, structure) -> bool:
        """True when ``structure`` matches nothing seen before (and remember it)."""
        bucket = self.buckets.setdefault(structure.composition.reduced_formula, [])
        if any(validate.matches(structure, t) for t in bucket):
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
        obeys_elements=obeys, contact_ratio=validate.contact_ratio(structure),
    )
    if known is not None:
        match = validate.known_match(structure, known)
        cand.novel, cand.known_match = match is None, match or ""
    if tracker is not None:
        cand.unique = tracker.add(structure)
    if conditions.working_ion:
        cand.capacity = battery.capacity_grav(structure.composition, conditions.working_ion)
    return cand


@dataclasses.dataclass
class Tally:
    """What happened to the sampled sequences (the page and the bench report it).

    ``sampled`` counts every sequence drawn, resampled ones included, so
    ``accepted / sampled`` is the acceptance rate and throughput pays for rejections;
    it is the sum of ``accepted`` and every count of a reason a sequence was not.
    """

    sampled: int = 0
    dead_end: int = 0  # hit a dead end in the grammar or did not build into a crystal
    invalid: int = 0  # built, but atoms closer than 0.5 A (rejected and resampled)
    overlapping: int = 0  # valid, but two atoms closer than MIN_CONTACT_RATIO x their radius sum (likewise)
    not_neutral: int = 0  # built and valid, but no SMACT charge-neutral assignment (rejected and resampled)
    known: int = 0  # passed, but matches a known phase (rejected and resampled with ``novel_only``)
    screened_out: int = 0  # passed, but further from the property targets than those kept (see ``screen``)
    surplus: int = 0  # drawn in a round that had filled its batch before they were checked (not needed)
    accepted: int = 0
    batches: int = 0
    rounds: int = 0  # sampling rounds, over all batches
    cut_short: int = 0  # batches that stopped at their limit of sequences (MAX_SAMPLED_PER_CANDIDATE) unfilled
    limit: int = 0  # the sequences those batches were allowed, together

    def __iadd__(self, other: Tally) -> Tally:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def dropped(self) -> int:
        return self.sampled - self.accepted

    def shortfall_reason(self, asked: int) -> str:
        """Why fewer than ``asked`` candidates came back, in numbers; "" when none is missing.

        Examples
        --------
        >>> Tally(sampled=1200, dead_end=208, overlapping=870, not_neutral=80, accepted=42, batches=1,
        ...       rounds=22, cut_short=1, limit=1200).shortfall_reason(50)  # doctest: +NORMALIZE_WHITESPACE
        '42 of the 50 candidates asked for: sampling stopped at its limit, 1,200 sequences in 22 rounds; 42 passed
        the checks (4 %), 208 hit a dead end or did not build, 870 had two atoms closer than 0.6 x their radius
        sum and 80 were not charge-neutral.'
        """
        if self.accepted >= asked:
            return ""
        reasons = [(self.dead_end, "hit a dead end or did not build"), (self.invalid, "had atoms closer than 0.5 A"),
                   (self.overlapping, f"had two atoms closer than {validate.MIN_CONTACT_RATIO:g} x their radius sum"),
                   (self.not_neutral, "were not charge-neutral"), (self.known, "matched a known phase")]
        said = [f"{k:,} {text}" for k, text in reasons if k]
        failed = ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else "".join(said)
        head = f"{self.accepted:,} of the {asked:,} candidates asked for"
        if not self.cut_short:  # one round without resampling: what fails is dropped, not replaced
            return f"{head}: without resampling, failed sequences are not replaced; of {self.sampled:,}, {failed}."
        passed = self.sampled - sum(k for k, _ in reasons)
        checks = f"{passed:,} passed the checks ({100 * passed / self.sampled:.0f} %)"
        checks += f", {failed}" if failed else ""
        if self.batches == 1:
            return (f"{head}: sampling stopped at its limit, {self.limit:,} sequences in {self.rounds:,} rounds; "
                    f"{checks}.")
        return (f"{head}: {self.cut_short} of {self.batches} batches stopped at their limit ({self.limit:,} sequences "
                f"together); of {self.sampled:,} sequences sampled in {self.rounds:,} rounds, {checks}.")


def rejection(structure) -> str | None:
    """Why the sampler rejects ``structure`` (the :class:`Tally` field that counts it), or None when it passes:
    "invalid" (atoms closer than 0.5 A), "overlapping" (two atoms closer than
    :data:`~battgai.materials.checks.validate.MIN_CONTACT_RATIO` x their radius sum), "not_neutral" (no SMACT
    charge-neutral assignment), checked in that order."""
    if not validate.structural_valid(structure):
        return "invalid"
    if validate.contact_ratio(structure) < validate.MIN_CONTACT_RATIO:
        return "overlapping"
    if not validate.smact_valid(structure.composition.element_composition.as_dict()):
        return "not_neutral"
    return None


def _batch_seed(seed: int, batch: int, round_: int) -> int:
    # Round 0 keeps the seed scheme of earlier releases, so their runs resume unchanged.
    return seed * 1_000_003 + batch + round_ * 1_000_000_007


def build_all(tokens: np.ndarray, ok: np.ndarray) -> list[tuple[object, tk.WyckoffCrystal] | None]:
    """``(Structure, WyckoffCrystal)`` of each sampled sequence; None for dead ends and crystals that do not build."""
    from battgai.materials.generation.build import BuildError, to_structure

    out = []
    for t, good in zip(tokens, ok, strict=True):
        try:
            if not good:
                raise BuildError("dead end")
            wc = tk.decode(t)
            out.append((to_structure(wc), wc))
        except (tk.TokenizeError, BuildError):
            out.append(None)
    return out


def generate_batches(lm: LoadedModel, conditions: Conditions, n: int, seed: int = 0, batch_size: int = 100,
                     known: Mapping[str, Sequence] | None = None, tracker: UniqueTracker | None = None,
                     start_batch: int = 0, resample: bool = True,
                     guidance: float = 1.0, oversample: int = 1,
                     refs=None, temperature: float = 1.0, novel_only: bool = False,
                     element_temperature: float = 1.0, max_sampled: int = MAX_SAMPLED_PER_CANDIDATE,
                     on_progress: Callable[[int, int], None] | None = None,
                     ) -> Iterator[tuple[int, list[Candidate], Tally]]:
    """Yield ``(batch index, candidates, tally)`` until ``n`` candidates were asked for.

    With ``resample`` (the default) a sequence whose crystal is invalid (atoms closer
    than 0.5 A), has two atoms closer than :data:`~battgai.materials.checks.validate.MIN_CONTACT_RATIO`
    times their radius sum (a third of the raw samples; they fuse or end far above the hull
    when relaxed) or is not charge-neutral by SMACT is rejected and the batch's shortfall is
    sampled again until the batch is full or has drawn ``max_sampled`` sequences per crystal
    it needs; the tally then says why it is short (:meth:`Tally.shortfall_reason`). The first
    :data:`SHORTFALL_ROUNDS` rounds draw just the shortfall, later ones the shortfall over
    the share that passed so far. Rejection sampling returns crystals
    from the model's own distribution conditioned on passing the checks, unlike
    repairing them; the tally records the price. For the same reason the sampler's
    neutrality mask is off then (:func:`~battgai.materials.generation.sample.sample_tokens`,
    ``hold_neutral``): holding the site list open until the composition is neutral
    made the model add elements, over-producing 4- and 5-element crystals, and fewer
    relaxed stable (docs/BENCHMARKS.md). Without ``resample`` every crystal that
    builds is returned, as the raw model makes it, with all masks on.

    ``guidance`` is the classifier-free guidance weight on property targets,
    ``temperature`` divides the logits (below 1: closer to the training data, fewer
    surprises) and ``element_temperature`` those of element tokens once more (above 1:
    new compositions in familiar structures); see :func:`~battgai.materials.generation.sample.sample_tokens`.

    ``oversample`` > 1 samples that many times more crystals per batch and keeps those
    whose static CHGNet energies come closest to the property targets (:func:`screen`,
    with reference phases ``refs``); uniqueness is judged among those kept.

    ``novel_only`` also rejects and resamples crystals that match a structure of ``known``
    (StructureMatcher; the app passes every known phase on hand,
    :func:`~battgai.materials.checks.references.known_phases`): a quarter of the app's samples
    reproduce a training structure (docs/BENCHMARKS.md), and a researcher looking for new
    materials has no use for them. It works with or without ``resample``.

    Round ``r`` of batch ``b`` always uses the same seed, so an interrupted run
    resumes exactly by passing ``start_batch``.

    ``on_progress(batch, kept)`` is called after each token position, each round and each
    crystal kept: a page stops a script only at its next page call, so this is where Stop and
    a closed tab act.
    """
    if novel_only and known is None:
        raise ValueError("novel_only needs known structures (known) to judge newness against")
    if max_sampled < 1:
        raise ValueError(f"max_sampled must be at least 1 sequence per crystal, got {max_sampled}")
    if not 1 <= oversample <= MAX_OVERSAMPLE:
        raise ValueError(f"oversample must be 1..{MAX_OVERSAMPLE}, got {oversample}")
    if not (temperature > 0 and element_temperature > 0):
        raise ValueError(f"temperature and element temperature must be above 0, got {temperature}, "
                         f"{element_temperature}")
    problems = screen_problems(conditions, refs) if oversample > 1 else []
    if problems:
        raise ValueError(" ".join(problems))
    tracker = tracker if tracker is not None else UniqueTracker()
    n_batches = math.ceil(n / batch_size)
    for b in range(start_batch, n_batches):
        size = min(batch_size, n - b * batch_size)
        need, kept = size * oversample, []
        # Without resampling one round is drawn, and what fails is dropped.
        limit = max_sampled * need if resample or novel_only else need
        tally = Tally(batches=1)
        while len(kept) < need and tally.sampled < limit:
            short = need - len(kept)
            # Where few crystals pass, rounds of the bare shortfall would dwindle to one or two sequences, each round
            # costing about a sequence's time on top; after SHORTFALL_ROUNDS, draw what should fill the batch.
            want = short if tally.rounds < SHORTFALL_ROUNDS else math.ceil(short * tally.sampled / max(len(kept), 1))
            want = min(want, limit - tally.sampled)
            step = on_progress and functools.partial(on_progress, b, len(kept) // oversample)
            # Rejecting non-neutral crystals replaces the neutrality mask, which distorts what the model writes.
            tokens, ok = sample_tokens(lm, conditions, want, seed=_batch_seed(seed, b, tally.rounds),
                                      guidance=guidance, temperature=temperature, hold_neutral=not resample,
                                      element_temperature=element_temperature,
                                      on_step=step)
            tally.sampled += want
            tally.rounds += 1
            if on_progress:
                on_progress(b, len(kept) // oversample)
            for k, built in enumerate(build_all(tokens, ok)):
                if len(kept) == need:  # the sequences are exchangeable: keeping the first that pass is fair
                    tally.surplus = want - k
                    break
                if built is None:
                    tally.dead_end += 1
                    continue
                s, wc = built
                why = rejection(s) if resample else None
                if why:
                    setattr(tally, why, getattr(tally, why) + 1)
                elif novel_only and not validate.is_novel(s, known):
                    tally.known += 1
                else:
                    kept.append((s, wc.spacegroup))
                    if on_progress:
                        on_progress(b, len(kept) // oversample)
        judge = None if novel_only else known  # novel_only has judged every crystal kept already
        if oversample == 1:
            cands = [check(s, conditions, judge, sg, tracker=tracker) for s, sg in kept]
        else:
            cands = screen([check(s, conditions, judge, sg) for s, sg in kept], conditions, refs, size)
            for c in cands:
                c.unique = tracker.add(c.structure)
        if novel_only:
            for c in cands:
                c.novel = True
        tally.screened_out, tally.accepted = len(kept) - len(cands), len(cands)
        if len(cands) < size and (resample or novel_only):
            tally.cut_short, tally.limit = 1, limit
        yield b, cands, tally


def generate(lm: LoadedModel, conditions: Conditions, n: int, seed: int = 0, batch_size: int = 100,
             known: Mapping[str, Sequence] | None = None, progress: Progress | None = None,
             resample: bool = True, guidance: float = 1.0, oversample: int = 1,
             refs=None, temperature: float = 1.0, novel_only: bool = False,
             element_temperature: float = 1.0, max_sampled: int = MAX_SAMPLED_PER_CANDIDATE,
             ) -> tuple[list[Candidate], Tally]:
    """Sample ``n`` crystals under ``conditions``; returns ``(candidates, tally)``.

    Fewer than ``n`` come back only when sampling reached its limit (``max_sampled``
    sequences per crystal) or resampling is off; ``tally.shortfall_reason(n)`` says why
    in numbers. See :func:`generate_batches` for ``resample``, ``guidance``, ``oversample``,
    ``refs``, ``temperature``, ``novel_only``, ``element_temperature`` and ``max_sampled``.
    """
    cands, total = [], Tally()
    within = (lambda b, kept: progress(min(b * batch_size + kept, n), n)) if progress else None
    for b, batch, tally in generate_batches(lm, conditions, n, seed, batch_size, known, resample=resample,
                                            guidance=guidance, oversample=oversample, refs=refs,
                                            temperature=temperature, novel_only=novel_only,
                                            element_temperature=element_temperature, max_sampled=max_sampled,
                                            on_progress=within):
        cands += batch
        total += tally
        if progress:
            progress(min((b + 1) * batch_size, n), n)
    return cands, total


#: Property targets a potential's static energies can screen for, with the spread (eV/atom, V) that makes their
#: distances comparable. The band gap is missing: no interatomic potential predicts it.
SCREENABLE = {"formation_energy": 1.0, "e_above_hull": 0.1, "voltage": 1.0}
#: Most crystals sampled per crystal kept by a screen (static CHGNet costs ~0.1 s per crystal on a CPU core).
MAX_OVERSAMPLE = 5


def _screen_targets(conditions: Conditions) -> dict[str, float]:
    return {q: getattr(conditions, q) for q in SCREENABLE if getattr(conditions, q) is not None}


def screen_problems(conditions: Conditions, refs) -> list[str]:
    """Why :func:`screen` cannot rank candidates for ``conditions`` (empty when it can)."""
    targets = _screen_targets(conditions)
    if not targets:
        return ["Screening needs a formation-energy, E_hull or voltage target (no potential predicts the band gap)."]
    problems = []
    if "voltage" in targets and not conditions.working_ion:
        problems.append("A voltage screen needs a working ion.")
    if refs is None and set(targets) - {"voltage"}:
        problems.append("An E_hull or formation-energy screen needs the MP-20 reference phases (shared data).")
    return problems


def screen(cands: Sequence[Candidate], conditions: Conditions, refs, keep: int) -> list[Candidate]:
    """The ``keep`` candidates whose static energies come closest to the property targets.

    Generating more than needed and keeping those predicted nearest the targets is
    rejection by a validated surrogate (docs/BENCHMARKS.md: E_hull and voltage proxies),
    on top of the model's own conditioning. Energies come from the potential of ``refs``
    (CHGNet without them) and are added in place (static, on the generated geometry);
    E_hull below its target counts as on target. A candidate without a prediction comes
    last. The order of the candidates kept is preserved.

    Raises
    ------
    ValueError
        ``conditions`` holds no target in :data:`SCREENABLE`, or the reference phases
        an E_hull or formation-energy target needs are missing.
    """
    problems = screen_problems(conditions, refs)
    if problems:
        raise ValueError(" ".join(problems))
    targets = _screen_targets(conditions)
    add_energies(cands, refs, conditions.working_ion, potential=refs.potential if refs is not None else "chgnet")

    def distance(c: Candidate) -> float:
        d = sum((max(getattr(c, q) - v, 0.0) if q == "e_above_hull" else abs(getattr(c, q) - v)) / SCREENABLE[q]
                for q, v in targets.items())
        return d if np.isfinite(d) else math.inf

    best = sorted(range(len(cands)), key=lambda i: distance(cands[i]))[:keep]
    return [cands[i] for i in sorted(best)]


def generate_job(model: str, conditions: Conditions, n: int, seed: int = 0, *, screen_potential: str | None = None,
                 progress: Progress | None = None,
                 **settings) -> tuple[list[Candidate], Tally]:
    """:func:`generate` with the model, the known structures and the screen's references looked up by name.

    What the page runs in a worker of the engine (:func:`battgai.core.engine.run`): it sends names, not the
    loaded objects, which would copy the known-phase index and the reference phases into every job. "New" is
    judged against every known phase on hand (:func:`~battgai.materials.checks.references.known_phases`);
    ``screen_potential`` names the potential of the references an ``oversample`` screen needs; ``settings``
    are :func:`generate`'s other keywords.
    """
    from battgai.materials.checks import references
    from battgai.materials.generation.sample import load_model

    known = references.known_phases()[0]
    refs = references.reference_phases(screen_potential)[0] if screen_potential else None
    return generate(load_model(model), conditions, n, seed, known=known, refs=refs, progress=progress, **settings)


def energies_job(cands: Sequence[Candidate], potential: str, ion: str | None = None, relax: bool = False,
                 progress: Progress | None = None) -> list[Candidate]:
    """:func:`add_energies` against the references in use for ``potential``; returns the candidates filled in.

    A worker fills its own copies, so the caller takes them back from the result.
    """
    from battgai.materials.checks import references

    cands = list(cands)
    add_energies(cands, references.reference_phases(potential)[0], ion, relax=relax, progress=progress,
                 potential=potential)
    return cands


def add_energies(cands: Sequence[Candidate], refs, ion: str | None = None, relax: bool = False,
                 progress: Progress | None = None, potential: str = "chgnet") -> None:
    """Fill energy, E_hull, formation energy and (with ``ion``) voltage from ``potential``, in place.

    ``potential`` is one of :data:`~battgai.materials.checks.stability.POTENTIALS`
    (CHGNet by default). ``refs`` is a
    :class:`~battgai.materials.checks.stability.ReferencePhases` of the same potential
    (or None: energies only). With ``relax`` each structure is first relaxed with
    that potential. Invalid structures are skipped (their energy is meaningless).
    """
    from battgai.materials.checks import stability

    stability.check_potential(potential)
    if refs is not None and refs.potential != potential:
        raise ValueError(f"reference phases use {refs.potential}, candidates {potential}: "
                         "an energy above hull needs one potential for both")
    todo = [c for c in cands if c.valid_structure]
    for k, c in enumerate(todo):
        _add_energy(c, refs, ion, relax, potential)
        if progress:
            progress(k + 1, len(todo))


def _add_energy(c: Candidate, refs, ion: str | None, relax: bool, potential: str) -> None:
    from battgai.materials.checks import stability

    if missing := stability.uncovered_elements(c.structure, potential):
        c.note = f"no energy: {stability.no_parameters_message(missing, potential)}"
        return
    if problem := stability.energy_problem(c.structure):
        c.note = f"no energy: {problem}"
        return
    not_relaxed = stability.energy_problem(c.structure, relax=True) if relax else None
    if not_relaxed:  # too big to relax, but a static energy is cheap: give that, and say so
        relax = False
    if relax:
        try:
            c.structure, c.e_per_atom = stability.relax(c.structure, potential=potential)
        except stability.RelaxationError as exc:  # keep the candidate as generated, say why it has no energy
            c.note = f"not relaxed: {exc}"
            return
        c.relaxed = True
        c.spacegroup_found = validate.spacegroup_found(c.structure)
    else:
        c.e_per_atom = float(stability.static_energies([c.structure], potential=potential)[0])
    c.potential = potential
    if not_relaxed:
        c.note = f"not relaxed, static energy: {not_relaxed}"
    if refs is not None:
        h = refs.hull(c.structure.composition, c.e_per_atom)
        c.e_above_hull, c.formation_energy = h.e_above_hull, h.formation_energy
        if h.note:
            c.note = f"{c.note}; {h.note}" if not_relaxed else h.note
    if ion:
        c.voltage = battery.candidate_voltage(c.structure, c.e_per_atom, ion, potential)
