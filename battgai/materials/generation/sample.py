"""Sample crystals from the bundled GPT under hard constraints (masks on the logits).

Constraints are enforced while sampling, not by filtering afterwards:
allowed elements mask element tokens; space groups mask the space-group token;
the atom budget masks Wyckoff letters whose multiplicity would overshoot it; an
occupied Wyckoff position without free parameters cannot be chosen again; the
site list may only end once every required element is present and the atom
count is the one asked. Property targets enter as condition tokens.

Validity masks (on unless ``validity_masks=False``) steer the network to crystals that
pass the checks: the site list may not end on a composition SMACT calls impossible; a
coordinate may not put two atoms on one point; each lattice value must leave a cell
within :data:`MAX_VOLUME_PER_ATOM` with all atoms 0.5 A apart possible (a mask for the
necessary condition, then a look-ahead over the parameters still to come for the value
drawn, redrawn while it fails), with angles in :data:`ANGLE_RANGE`. Where nothing
passes, a mask is lifted and the crystal comes out invalid.

The neutrality mask holds the site list open, so the model adds sites (mostly new
elements) it would not have chosen; a caller that rejects non-neutral crystals
anyway turns it off (``hold_neutral=False``) and samples the model's own distribution
given neutrality, which over-produces fewer 4- and 5-element crystals (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import numpy as np

from battgai.materials.generation import tokenizer as tk

DEFAULT_MODEL = "materials_gpt"
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


@dataclasses.dataclass(frozen=True)
class Conditions:
    """What the researcher asks for. ``None`` / empty means "no constraint".

    ``n_atoms`` counts atoms in the primitive cell (MP-20 has at most 20).
    Property targets are values; the model is conditioned on their bin.
    """

    allowed_elements: tuple[str, ...] = ()
    required_elements: tuple[str, ...] = ()
    spacegroups: tuple[int, ...] = ()
    n_atoms: int | None = None
    formation_energy: float | None = None
    band_gap: float | None = None
    e_above_hull: float | None = None
    voltage: float | None = None
    working_ion: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def spacegroups_of_system(system: str) -> tuple[int, ...]:
    """Space-group numbers of a crystal system (trigonal and hexagonal are told apart)."""
    bounds = {"triclinic": (1, 2), "monoclinic": (3, 15), "orthorhombic": (16, 74), "tetragonal": (75, 142),
              "trigonal": (143, 167), "hexagonal": (168, 194), "cubic": (195, 230)}
    if system not in bounds:
        raise ValueError(f"crystal system must be one of {CRYSTAL_SYSTEMS}, got {system!r}")
    lo, hi = bounds[system]
    return tuple(range(lo, hi + 1))


def _sg_can_hold(sg: int, n_conv: int, n_sites_min: int) -> bool:
    # Reachable (atom count, max distinct sites) by summing Wyckoff multiplicities; positions without
    # free parameters can be used once, the others any number of times.
    table = tk.wyckoff_table()
    best = np.full(n_conv + 1, -1)
    best[0] = 0
    for j in np.flatnonzero(table.multiplicity[sg]):
        m, reusable = int(table.multiplicity[sg, j]), table.dof[sg, j] > 0
        prev = best.copy()
        for total in range(m, n_conv + 1):
            src = best[total - m] if reusable else prev[total - m]
            if src >= 0:
                best[total] = max(best[total], src + 1)
    return best[n_conv] >= n_sites_min


#: Elements in none of the training crystals (MP-20 has no Ar, Po-Ra or Am-Lr compounds): their tokens were never
#: trained, so the model cannot place them (and CHGNet / SevenNet-0 cover none beyond Pu). Checked against the data
#: in tests/test_materials_core.py.
UNSEEN_ELEMENTS = ("Ar", "Po", "At", "Rn", "Fr", "Ra", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr")


def check_conditions(c: Conditions) -> list[str]:
    """Reasons why no crystal can satisfy ``c`` (empty when it is satisfiable as far as can be checked)."""
    from pymatgen.core import Element

    problems = []
    for el in (*c.allowed_elements, *c.required_elements, *([c.working_ion] if c.working_ion else [])):
        if not Element.is_valid_symbol(el):
            problems.append(f"{el!r} is not an element symbol.")
        elif el in UNSEEN_ELEMENTS or Element(el).Z > tk.MAX_Z:
            problems.append(f"{el} is in none of the training crystals (MP-20 has no {el} compounds), so the model "
                            "cannot place it; its elements are H to Pu without Ar and Po to Ra.")
    if problems:
        return problems
    required = set(c.required_elements) | ({c.working_ion} if c.working_ion else set())
    if c.allowed_elements and not required <= set(c.allowed_elements):
        problems.append("Required elements / working ion " + ", ".join(sorted(required - set(c.allowed_elements)))
                        + " are not in the allowed set.")
    if c.n_atoms is not None:
        if not 1 <= c.n_atoms <= tk.MAX_ATOMS:
            problems.append(f"Number of atoms must be 1..{tk.MAX_ATOMS} (the model was trained on MP-20).")
        elif len(required) > c.n_atoms:
            problems.append(f"{len(required)} required elements cannot fit in {c.n_atoms} atoms.")
        elif c.spacegroups:
            table = tk.wyckoff_table()
            ok = [sg for sg in c.spacegroups
                  if _sg_can_hold(sg, c.n_atoms * int(table.centering[sg]), max(1, len(required)))]
            if not ok:
                problems.append(f"No asked space group can hold {c.n_atoms} atoms per primitive cell "
                                f"with {max(1, len(required))} distinct sites (Wyckoff multiplicities).")
    if any(not 1 <= sg <= 230 for sg in c.spacegroups):
        problems.append("Space-group numbers must be 1..230.")
    if c.allowed_elements and not problems and not _charge_neutral_possible(c, required):
        problems.append("No charge-neutral composition of the allowed elements (SMACT oxidation states, up to "
                        f"6 atoms of each and {c.n_atoms or 12} in all) contains all required elements.")
    return problems


def _charge_neutral_possible(c: Conditions, required: set[str]) -> bool:
    # Exhaustive only for small element sets; with many allowed elements a neutral mix is near certain.
    from battgai.materials.checks.validate import smact_valid

    if len(c.allowed_elements) > 6:
        return True
    n_max = c.n_atoms or 12
    others = [e for e in c.allowed_elements if e not in required]
    for k in range(0, 4 - len(required) + 1 if len(required) <= 4 else 1):
        for extra in itertools.combinations(others, k):
            els = sorted(required) + list(extra)
            if not els:
                continue
            for counts in itertools.product(range(1, 7), repeat=len(els)):
                if sum(counts) <= n_max and smact_valid(dict(zip(els, counts, strict=True))):
                    return True
    return False


@dataclasses.dataclass
class LoadedModel:
    """The GPT plus what provenance needs."""

    model: object
    name: str
    sha256: str


@functools.cache
def load_model(name: str = DEFAULT_MODEL) -> LoadedModel:
    """Rebuild the bundled model from its registry card and verified weights."""

    from battgai.core import registry
    from battgai.materials.generation.model import GPT, GPTConfig

    state, card = registry.load_tensors(name)
    model = GPT(GPTConfig(**card.config))
    model.load_stored(state)
    model.eval()
    return LoadedModel(model, name, card.sha256)


#: Grammar phase at which the lattice of each crystal system is fully determined (6-8 a b c, 9-11 angles).
_LAST_LATTICE_PHASE = {"triclinic": 11, "monoclinic": 10}
#: Phases after which only one or two angles (indices into a b c alpha beta gamma) still shape the cell: the
#: sampler looks ahead over them on a grid there (three, after a triclinic c, would cost too much). A monoclinic
#: alpha and gamma are always 90 degrees.
_ANGLES_TO_COME = {"monoclinic": {8: (4,)}, "triclinic": {9: (4, 5), 10: (5,)}}
#: Lattice angles (degrees) the validity masks allow. MP-20's cells have 60-134; far outside, a cell is a sliver
#: whose nearest images lie beyond the one cell around that the distance check looks at.
ANGLE_RANGE = (30.0, 150.0)
#: A3 per atom; the 99.9th percentile of MP-20 is 74 (median 18). The distance mask keeps cells below it.
MAX_VOLUME_PER_ATOM = 75.0
#: The SMACT search grows as (oxidation states) ** elements; beyond this many elements the site list is not
#: held open for neutrality (MP-20 has few such crystals, and they are checked afterwards like any other).
_NEUTRAL_MAX_ELEMENTS = 5
#: Every this many length bins are tried for an unknown length that is not the last (a coarse grid).
_LENGTH_GRID_STEP = 16
#: Every this many degrees are tried for the last angle, before it is drawn.
_ANGLE_GRID_STEP = 3
_GENERIC = np.array([0.1234, 0.3917, 0.6871])  # stand-ins for coordinates not drawn yet: on no special position
_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


class _Masks:
    """Per-sequence grammar state and the logit mask for the next token."""

    def __init__(self, c: Conditions, n: int, validity: bool = True, hold_neutral: bool = True):
        from pymatgen.core import Element

        self.table = tk.wyckoff_table()
        v = tk.VOCAB_SIZE
        self.el_ok = np.zeros(v, bool)
        s, size = tk.LAYOUT["el"]
        if c.allowed_elements:
            for el in c.allowed_elements:
                self.el_ok[s + Element(el).Z - 1] = True
        else:  # any element the model learnt: an untrained token would give a meaningless crystal
            self.el_ok[s: s + size] = True
            self.el_ok[[s + Element(el).Z - 1 for el in UNSEEN_ELEMENTS]] = False
        self.required = {Element(e).Z for e in (*c.required_elements, *([c.working_ion] if c.working_ion else []))}
        self.sg_ok = np.zeros(v, bool)
        sgs = c.spacegroups or tuple(range(1, 231))
        if c.n_atoms:
            # Drop groups that cannot hold the atom count, so sampling never dead-ends on them.
            sgs = tuple(sg for sg in sgs if _sg_can_hold(sg, c.n_atoms * int(self.table.centering[sg]),
                                                         max(1, len(self.required))))
        for sg in sgs:
            self.sg_ok[tk.LAYOUT["sg"][0] + sg - 1] = True
        self.n_atoms = c.n_atoms
        self.group_masks = {g: self._range(g) for g in ("coord", "length", "angle")}
        self.sg = np.zeros(n, int)
        self.count = np.zeros(n, int)  # atoms in the conventional cell so far
        self.used_fixed = [set() for _ in range(n)]
        self.elements = [set() for _ in range(n)]
        self.n_sites = np.zeros(n, int)
        self.stuck = np.zeros(n, bool)
        self.validity = validity
        self.hold_neutral = validity and hold_neutral
        self.letter = np.zeros(n, int)  # Wyckoff letter index of the site being written
        self.xyz = [[] for _ in range(n)]  # its coordinates so far
        self.atoms = [np.zeros((0, 3)) for _ in range(n)]  # fractional coordinates of finished sites
        self.counts = [{} for _ in range(n)]  # Z -> atoms in the conventional cell
        self.lattice = [[] for _ in range(n)]
        self.forced = np.zeros(n, bool)  # the site list was held open for neutrality

    @staticmethod
    def _range(group: str) -> np.ndarray:
        m = np.zeros(tk.VOCAB_SIZE, bool)
        s, size = tk.LAYOUT[group]
        m[s: s + size] = True
        return m

    def mask(self, i: int, phase: int) -> np.ndarray:
        """Allowed next tokens of sequence ``i``; ``phase`` is its position in the grammar."""
        if phase == 0:
            return self.sg_ok
        if phase == 1:
            return self._site_or_end(i)
        if phase == 2:
            return self._element(i)
        if phase in (3, 4, 5):
            if self.validity:
                return self._no_overlap(i, phase - 3)
            return self.group_masks["coord"]
        group = "length" if phase in (6, 7, 8) else "angle"
        if phase <= 11:
            system = self.table.crystal_system[self.sg[i]]
            last = _LAST_LATTICE_PHASE.get(system, 8)
            if self.validity and phase <= last:
                return self._lattice_far_enough(i, phase, group, exact=phase == last)
            return self.group_masks[group]
        m = np.zeros(tk.VOCAB_SIZE, bool)
        m[tk.EOS] = True
        return m

    def _element(self, i: int) -> np.ndarray:
        # The Wyckoff site just chosen is already counted; if the atom budget left cannot hold one more
        # site per missing required element, this site must take one of them.
        missing = self.required - self.elements[i]
        if not missing:
            return self._neutralizing(i) if self.forced[i] else self.el_ok
        sg = self.sg[i]
        left = (self.n_atoms or tk.MAX_ATOMS) * int(self.table.centering[sg]) - self.count[i]
        mult = self.table.multiplicity[sg]
        smallest = int(mult[mult > 0].min())
        if left // smallest >= len(missing) and self.n_sites[i] + len(missing) < tk.MAX_SITES:
            return self.el_ok
        m = np.zeros(tk.VOCAB_SIZE, bool)
        for z in missing:
            m[tk.LAYOUT["el"][0] + z - 1] = True
        return m

    def _site_or_end(self, i: int) -> np.ndarray:
        sg = self.sg[i]
        cent = int(self.table.centering[sg])
        cap = (self.n_atoms or tk.MAX_ATOMS) * cent
        m = np.zeros(tk.VOCAB_SIZE, bool)
        if self.n_sites[i] < tk.MAX_SITES:
            mult, _dof = self.table.multiplicity[sg], self.table.dof[sg]
            ok = (mult > 0) & (self.count[i] + mult <= cap)
            if self.n_atoms:
                # Only letters after which the exact atom count stays reachable.
                reach = _reachable(sg, cap)
                ok &= reach[np.clip(cap - self.count[i] - mult, 0, cap)] & (cap - self.count[i] - mult >= 0)
            for j in self.used_fixed[i]:
                ok[j] = False
            if self.validity and len(self.atoms[i]):
                taken = [j for j in np.flatnonzero(ok & (_dof == 0)) if self._hits_placed(i, j)]
                if len(taken) < ok.sum():  # as elsewhere, a mask that leaves nothing is lifted
                    ok[taken] = False
            m[tk.LAYOUT["wy"][0]: tk.LAYOUT["wy"][0] + len(ok)] = ok
        done = self.count[i] > 0 and self.required <= self.elements[i]
        if self.n_atoms:
            done = done and self.count[i] == cap
        if done and m.any() and self.hold_neutral and len(self.counts[i]) <= _NEUTRAL_MAX_ELEMENTS \
                and not self._neutral(i):
            self.forced[i] = True
            return m  # another site still fits: do not end on a composition SMACT calls impossible
        if done or not m.any():
            m[tk.LATT] = True
            self.stuck[i] |= not done
        return m

    def _neutralizing(self, i: int) -> np.ndarray:
        # This site was added because the composition was not charge neutral: prefer the elements that make
        # it neutral now, so the atom budget is not spent before a neutral composition comes up. Sums of
        # oxidation states rule most elements out cheaply; SMACT (with its electronegativity test) has the
        # last word on the rest.
        from pymatgen.core import Element

        from battgai.materials.checks.validate import smact_valid

        s = tk.LAYOUT["el"][0]
        mult = int(self.table.multiplicity[self.sg[i], self.letter[i]])
        charges = _charge_sums(tuple(sorted(self.counts[i].items())))
        metals = all(_is_metal(z) for z in self.counts[i])
        m = np.zeros(tk.VOCAB_SIZE, bool)
        for tok in np.flatnonzero(self.el_ok):
            z = tok - s + 1
            if not (metals and _is_metal(z)) and not any(-mult * q in charges for q in _oxidation_states(z)):
                continue
            counts = {**self.counts[i], z: self.counts[i].get(z, 0) + mult}
            m[tok] = smact_valid({Element.from_Z(k).symbol: n for k, n in counts.items()})
        return m if m.any() else self.el_ok

    def _neutral(self, i: int) -> bool:
        from pymatgen.core import Element

        from battgai.materials.checks.validate import smact_valid

        return smact_valid({Element.from_Z(z).symbol: n for z, n in self.counts[i].items()})

    def _orbits(self, i: int, xyz) -> np.ndarray:
        from battgai.materials.generation.build import orbit

        return orbit(int(self.sg[i]), tk.WYCKOFF_LETTERS[self.letter[i]], xyz)

    def _hits_placed(self, i: int, j: int) -> bool:
        # A Wyckoff position without free parameters that shares a point with an atom already placed.
        from battgai.materials.generation.build import orbit

        d = orbit(int(self.sg[i]), tk.WYCKOFF_LETTERS[j], np.zeros(3))[:, None, :] - self.atoms[i][None]
        return bool(np.all(np.abs(d - np.rint(d)) < 1e-6, axis=-1).any())

    def _orbit_fixed_after(self, i: int, k: int) -> bool:
        # True when the Wyckoff position's projection uses coordinate k and ignores k+1.., so k fixes the orbit
        # (positions without free parameters are checked when their letter is drawn, in _hits_placed).
        from battgai.materials.generation.build import wyckoff_ops

        proj, _ = wyckoff_ops(int(self.sg[i]), tk.WYCKOFF_LETTERS[self.letter[i]])
        return bool(np.any(proj[:3, k])) and not np.any(proj[:3, k + 1: 3])

    def _no_overlap(self, i: int, k: int) -> np.ndarray:
        # Orbits of every bin of coordinate k. A bin whose orbit has two coincident points (the representative
        # sits on a more special position) or, once the orbit is fixed, hits an atom already placed gives a
        # distance of 0 whatever the lattice. Coordinates not drawn yet take generic values, so a point that
        # is special for them is not mistaken for a special position.
        v = np.arange(tk.COORD_BINS) / tk.COORD_BINS
        xyz = np.tile(_GENERIC, (len(v), 1))
        xyz[:, :k] = self.xyz[i][:k]
        xyz[:, k] = v
        pts = self._orbits(i, xyz)
        placed = self.atoms[i].shape[0] if self._orbit_fixed_after(i, k) else 0
        others = np.concatenate([np.broadcast_to(self.atoms[i][:placed], (len(v), placed, 3)), pts], axis=1)
        d = pts[:, :, None, :] - others[:, None, :, :]
        d -= np.rint(d)
        if placed and self.table.crystal_system[self.sg[i]] == "cubic":
            # A cubic cell has one length, capped by the volume limit at the most atoms the group may hold:
            # points closer than MIN_DISTANCE at that length are too close in every cell the crystal can get.
            from battgai.materials.checks.validate import MIN_DISTANCE

            n_max = (self.n_atoms or tk.MAX_ATOMS) * int(self.table.centering[self.sg[i]])
            coincide = np.linalg.norm(d, axis=-1) * (MAX_VOLUME_PER_ATOM * n_max) ** (1 / 3) < MIN_DISTANCE
        else:
            coincide = np.all(np.abs(d) < 1e-6, axis=-1)
        m = pts.shape[1]
        coincide[:, np.arange(m), placed + np.arange(m)] = False  # a point and itself
        return self._restrict("coord", ~coincide.any(axis=(1, 2)))

    def _lattice_far_enough(self, i: int, phase: int, group: str, exact: bool) -> np.ndarray:
        # Values of this lattice parameter that leave a cell with all atoms >= MIN_DISTANCE apart possible.
        # Distances grow with every length, so unknown lengths are set to the longest; an unknown angle whose
        # cosine is free counts each pair's term at its largest, |a_i a_j f_i f_j|. That is exact once the
        # last parameter shaping the cell is drawn, and a necessary condition before it.
        from battgai.materials.checks.validate import MIN_DISTANCE
        from battgai.materials.generation.build import symmetrize_lattice

        values = _lattice_values(group)
        k = phase - 6
        sg = int(self.sg[i])
        # cos 0 = 1: the free-angle terms are taken at full length.
        later = [_lattice_values("length")[-1]] * 3 + [0.0] * 3
        params = symmetrize_lattice(sg, np.array([(*self.lattice[i], v, *later[k + 1:]) for v in values]))
        free = () if exact else tuple(a for a in range(max(k + 1, 3), 6) if params[0, a] == 0.0)
        ok = _far_enough(self.atoms[i], _metric(params), MIN_DISTANCE, free)
        if group == "angle":
            ok &= (values >= ANGLE_RANGE[0]) & (values < ANGLE_RANGE[1])
        if exact:
            ok &= self._volume_ok(i, params)
        return self._restrict(group, ok)

    def _volume_ok(self, i: int, params: np.ndarray) -> np.ndarray:
        # Separating atoms by blowing up the cell would trade an invalid crystal for a gas: such values stay
        # masked, and when nothing else passes the mask is lifted and the crystal is rejected.
        det = np.linalg.det(_metric(params))  # volume squared; <= 0 for angles no cell can have
        return (det > 0) & (np.sqrt(np.clip(det, 0, None)) / len(self.atoms[i]) <= MAX_VOLUME_PER_ATOM)

    def completes(self, i: int, phase: int, tok: int) -> bool:
        """Whether lattice value ``tok`` still leaves a valid cell within the volume cap reachable.

        Checked on the value drawn instead of masked over all values (the sampler redraws while
        it is False): it looks ahead over a grid of the parameters still to come, which costs too
        much for every value. The masks above are the necessary condition; this one is sufficient.
        """
        if not self.validity or not 6 <= phase <= 10:
            return True
        system = self.table.crystal_system[self.sg[i]]
        k, value = phase - 6, tk.lattice_value(tok)
        if system not in _LAST_LATTICE_PHASE:  # angles fixed by symmetry: only lengths shape the cell
            return phase == 8 or self._lengths_complete(i, k, value)
        unknown = _ANGLES_TO_COME[system].get(phase)
        return unknown is None or self._angles_complete(i, k, value, unknown)

    def _lengths_complete(self, i: int, k: int, value: float) -> bool:
        # The unknown lengths but the last on a coarse grid, the last as long as the volume cap allows
        # (distances and volume both grow with every length, so the longest allowed is the best choice).
        from battgai.materials.checks.validate import MIN_DISTANCE
        from battgai.materials.generation.build import symmetrize_lattice

        sg, lengths = int(self.sg[i]), _lattice_values("length")
        grid = lengths[:: _LENGTH_GRID_STEP, None] if k == 0 else np.zeros((1, 0))
        params = np.zeros((len(grid), 6))
        params[:, :k] = self.lattice[i]
        params[:, k] = value
        params[:, k + 1: 2] = grid
        # Largest last length within the volume cap, by bisection over its bins (volume grows with it).
        lo, hi = np.full(len(grid), -1), np.full(len(grid), len(lengths) - 1)
        while (lo < hi).any():
            active, mid = lo < hi, (lo + hi + 1) // 2
            params[:, 2] = lengths[np.clip(mid, 0, None)]
            fits = self._volume_ok(i, symmetrize_lattice(sg, params))
            lo, hi = np.where(active & fits, mid, lo), np.where(active & ~fits, mid - 1, hi)
        params[:, 2] = lengths[np.clip(lo, 0, None)]
        cells = symmetrize_lattice(sg, params[lo >= 0])
        return bool(len(cells) and _far_enough(self.atoms[i], _metric(cells), MIN_DISTANCE).any())

    def _angles_complete(self, i: int, k: int, value: float, unknown: tuple[int, ...]) -> bool:
        # Some values of the angles still to come (on a grid) make a valid cell; they are all that is left.
        from battgai.materials.checks.validate import MIN_DISTANCE
        from battgai.materials.generation.build import symmetrize_lattice

        angles = _lattice_values("angle")
        angles = angles[(angles >= ANGLE_RANGE[0]) & (angles < ANGLE_RANGE[1])][:: _ANGLE_GRID_STEP * len(unknown)]
        grid = np.array(list(itertools.product(angles, repeat=len(unknown))))
        params = np.zeros((len(grid), 6))
        params[:, :k] = self.lattice[i]
        params[:, k] = value
        params[:, list(unknown)] = grid
        cells = symmetrize_lattice(int(self.sg[i]), params)
        cells = cells[self._volume_ok(i, cells)]
        return bool(len(cells) and _far_enough(self.atoms[i], _metric(cells), MIN_DISTANCE).any())

    def _restrict(self, group: str, ok: np.ndarray) -> np.ndarray:
        # Where nothing passes the mask is lifted: the crystal will be invalid and rejected downstream.
        if not ok.any():
            return self.group_masks[group]
        m = np.zeros(tk.VOCAB_SIZE, bool)
        s, size = tk.LAYOUT[group]
        m[s: s + size] = ok
        return m

    def update(self, i: int, phase: int, tok: int) -> None:
        if phase == 1 and tok != tk.LATT:
            j = tok - tk.LAYOUT["wy"][0]
            sg = self.sg[i]
            self.count[i] += self.table.multiplicity[sg, j]
            if self.table.dof[sg, j] == 0:
                self.used_fixed[i].add(j)
            self.n_sites[i] += 1
            self.letter[i] = j
        elif phase == 0:
            self.sg[i] = tok - tk.LAYOUT["sg"][0] + 1
        elif phase == 2:
            self.forced[i] = False
            z = tok - tk.LAYOUT["el"][0] + 1
            self.elements[i].add(z)
            self.counts[i][z] = self.counts[i].get(z, 0) + int(self.table.multiplicity[self.sg[i], self.letter[i]])
        elif phase in (3, 4, 5):
            self.xyz[i].append((tok - tk.LAYOUT["coord"][0]) / tk.COORD_BINS)
            if phase == 5 and self.validity:
                self.atoms[i] = np.concatenate([self.atoms[i], self._orbits(i, self.xyz[i])])
            if phase == 5:
                self.xyz[i] = []
        elif 6 <= phase <= 11:
            self.lattice[i].append(tk.lattice_value(tok))


@functools.cache
def _oxidation_states(z: int) -> tuple[int, ...]:
    from pymatgen.core import Element

    from battgai.materials.checks.validate import smact_element

    try:
        return tuple(smact_element(Element.from_Z(z).symbol).oxidation_states or ())
    except (NameError, KeyError):  # an element SMACT has no data for
        return ()


@functools.cache
def _is_metal(z: int) -> bool:
    import smact
    from pymatgen.core import Element

    return Element.from_Z(z).symbol in smact.metals


@functools.cache
def _charge_sums(counts: tuple[tuple[int, int], ...]) -> frozenset[int]:
    # Every total charge the composition can carry, one oxidation state per element.
    sums = {0}
    for z, n in counts:
        sums = {t + n * q for t in sums for q in _oxidation_states(z)}
    return frozenset(sums)


def _metric(params: np.ndarray) -> np.ndarray:
    # Metric tensors (n, 3, 3) of lattice parameters (n, 6): G_ij = a_i . a_j.
    lengths, cosines = params[:, :3], np.cos(np.radians(params[:, 3:]))
    g = lengths[:, :, None] * lengths[:, None, :]
    g[:, 1, 2] *= cosines[:, 0]
    g[:, 2, 1] *= cosines[:, 0]
    g[:, 0, 2] *= cosines[:, 1]
    g[:, 2, 0] *= cosines[:, 1]
    g[:, 0, 1] *= cosines[:, 2]
    g[:, 1, 0] *= cosines[:, 2]
    return g


def _far_enough(frac: np.ndarray, metric: np.ndarray, min_dist: float, free_angles: tuple[int, ...] = ()
                ) -> np.ndarray:
    """Whether every two atoms at ``frac`` (m, 3) are ``min_dist`` apart, in each cell of ``metric`` (n, 3, 3).

    For the lattice angles in ``free_angles`` (3 = alpha, 4 = beta, 5 = gamma) the metric holds the
    product of the two lengths, and each pair's term counts at its largest (an upper bound on the
    distance over all values of that angle).
    """
    iu, ju = np.triu_indices(len(frac), 1)
    d = frac[iu] - frac[ju]
    d = ((d - np.rint(d))[:, None, :] + _SHIFTS[None]).reshape(-1, 3)  # nearest image and its neighbours
    outer = d[:, :, None] * d[:, None, :]
    for a in free_angles:
        p, q = {3: (1, 2), 4: (0, 2), 5: (0, 1)}[a]
        outer[:, p, q] = outer[:, q, p] = np.abs(outer[:, p, q])
    # Elementwise bounds over the candidate cells rule out most pairs before the exact (pairs x cells) product.
    lower = np.minimum(outer * metric.min(0), outer * metric.max(0)).sum(axis=(1, 2))
    near = outer[lower < min_dist**2]
    if not len(near):
        return np.ones(len(metric), bool)
    # Squared distances as one matrix product per block of cells (BLAS), in blocks that keep memory small.
    near, flat = near.reshape(len(near), 9).T, metric.reshape(len(metric), 9)
    step = max(1, 2**22 // near.shape[1])
    return np.concatenate([(flat[j: j + step] @ near).min(axis=1) for j in range(0, len(flat), step)]) >= min_dist**2


def condition_prefix(c: Conditions) -> list[int]:
    """BOS + the four condition tokens of ``c``."""
    values = {"formation_energy": c.formation_energy, "band_gap": c.band_gap, "e_above_hull": c.e_above_hull,
              "voltage": c.voltage}
    return [tk.BOS] + [tk.property_token(k, values[k]) for k in tk.PROPERTIES]


def sample_tokens(lm: LoadedModel, c: Conditions, n: int, seed: int = 0, temperature: float = 1.0,
                  guidance: float = 1.0, validity_masks: bool = True, hold_neutral: bool = True,
                  element_temperature: float = 1.0, on_step: Callable[[], None] | None = None,
                  record: list[np.ndarray] | None = None):
    """``n`` token sequences obeying ``c``; returns ``(tokens (n, SEQ_LEN), ok (n,) bool)``.

    ``ok`` is False for sequences that hit a dead end (e.g. the atom budget could
    not be met with the required elements); callers drop or report them.

    ``guidance`` > 1 applies classifier-free guidance to the property targets:
    the next-token logits are ``u + guidance * (c - u)``, with ``c`` the logits given
    the targets and ``u`` the logits with every target "unknown" (the model learned
    both through condition dropout). It doubles the cost; without targets it does nothing.

    ``validity_masks=False`` turns off the charge-neutrality and distance masks
    (see the module docstring), leaving the grammar and the researcher's constraints;
    ``hold_neutral=False`` turns off only the neutrality mask, for callers that reject
    non-neutral crystals themselves.

    ``temperature`` divides every logit; ``element_temperature`` divides the logits of
    element tokens once more, so above 1 the model writes less common elements into
    symmetry, sites and geometry it samples as usual (new compositions in familiar
    structures; measured in docs/BENCHMARKS.md).

    ``on_step()`` is called after every token position, so a caller can stop a long batch
    between tokens (by raising from it).

    ``record``, when given, receives the allowed-token mask ``(n, vocab)`` of every position
    sampled, in order: the distribution the tokens were drawn from is the model's softmax
    renormalised over those masks, which reward fine-tuning needs to score them
    (:mod:`battgai.materials.discovery.finetune`).
    """
    import torch

    # Local no_grad: CHGNet in the same process needs autograd for forces.
    with torch.no_grad():
        return _sample_tokens(lm, c, n, seed, temperature, guidance, validity_masks, hold_neutral,
                              element_temperature, on_step, record)


def _sample_tokens(lm: LoadedModel, c: Conditions, n: int, seed: int, temperature: float, guidance: float,
                   validity_masks: bool, hold_neutral: bool, element_temperature: float,
                   on_step: Callable[[], None] | None, record: list[np.ndarray] | None = None):
    import torch

    problems = check_conditions(c)
    if problems:
        raise ValueError(" ".join(problems))
    gen = torch.Generator().manual_seed(seed)
    masks = _Masks(c, n, validity_masks, hold_neutral)
    prefix = condition_prefix(c)
    unconditional = condition_prefix(Conditions())
    guided = guidance != 1.0 and prefix != unconditional
    seq = np.full((n, tk.SEQ_LEN), tk.PAD, dtype=np.int64)
    seq[:, : len(prefix)] = prefix
    phase = np.zeros(n, int)  # 0 sg, 1 site-or-LATT, 2 el, 3-5 xyz, 6-11 lattice (after LATT), 12 EOS, 13 done
    pos = len(prefix)
    first = np.concatenate([seq[:, :pos], np.tile(unconditional, (n, 1))]) if guided else seq[:, :pos]
    logits, past = lm.model(torch.from_numpy(first))
    while pos < tk.SEQ_LEN and (phase < 13).any():
        allowed = np.stack([masks.mask(i, phase[i]) if phase[i] < 13 else _pad_mask() for i in range(n)])
        if record is not None:
            record.append(allowed)
        lg = logits[:, -1, :]
        if guided:
            lg = lg[n:] + guidance * (lg[:n] - lg[n:])
        # Phase 2 is an element token; every other token is divided by the overall temperature only.
        t = torch.from_numpy(np.where(phase == 2, temperature * element_temperature, temperature)[:, None])
        lg = (lg / t.to(lg.dtype)).masked_fill(~torch.from_numpy(allowed), float("-inf"))
        probs = torch.softmax(lg, -1)
        tok = torch.multinomial(probs, 1, generator=gen).squeeze(1).numpy()
        for i in range(n):
            if phase[i] >= 13:
                continue
            if not masks.completes(i, phase[i], int(tok[i])):
                tok[i] = _redraw(masks, i, phase[i], probs[i], int(tok[i]), gen)
            masks.update(i, phase[i], int(tok[i]))
            phase[i] = _next_phase(phase[i], int(tok[i]))
        seq[:, pos] = tok
        if on_step:
            on_step()
        pos += 1
        if pos < tk.SEQ_LEN:
            step = seq[:, pos - 1: pos]
            logits, past = lm.model(torch.from_numpy(np.concatenate([step, step]) if guided else step), past)
    ok = (phase == 13) & ~masks.stuck
    return seq, ok


#: Most draws of one lattice value before the sampler settles for the first (see _Masks.completes).
MAX_REDRAWS = 64


def _redraw(masks: _Masks, i: int, phase: int, probs, first: int, gen) -> int:
    # Rejection sampling from the masked distribution restricted to values that complete: the same
    # distribution as masking, at the cost of one check per draw. If none completes, the first draw stays.
    import torch

    p = probs.clone()
    tok = first
    for _ in range(MAX_REDRAWS):
        p[tok] = 0.0
        if p.sum() <= 0:
            break
        tok = int(torch.multinomial(p, 1, generator=gen))
        if masks.completes(i, phase, tok):
            return tok
    return first


@functools.cache
def _reachable(sg: int, cap: int) -> np.ndarray:
    # Atom totals 0..cap reachable with the group's multiplicities (each letter any number of times).
    mult = [int(m) for m in tk.wyckoff_table().multiplicity[sg] if m > 0]
    reach = np.zeros(cap + 1, bool)
    reach[0] = True
    for total in range(1, cap + 1):
        reach[total] = any(m <= total and reach[total - m] for m in mult)
    return reach


@functools.cache
def _lattice_values(group: str) -> np.ndarray:
    # Value of every "length" or "angle" token, in token order (lengths ascending).
    s, size = tk.LAYOUT[group]
    values = np.array([tk.lattice_value(t) for t in range(s, s + size)])
    values.flags.writeable = False  # shared by every caller
    return values


@functools.cache
def _pad_mask() -> np.ndarray:
    m = np.zeros(tk.VOCAB_SIZE, bool)
    m[tk.PAD] = True
    return m


def _next_phase(phase: int, tok: int) -> int:
    if phase == 1:
        return 6 if tok == tk.LATT else 2
    if phase == 5:
        return 1  # after z, another site or the lattice
    return phase + 1


def parse_conditions(text: str) -> Conditions:
    """Conditions from ``key=value`` pairs separated by ``;`` (the CLI's ``--conditions``).

    Keys: ``allowed``, ``required`` (comma-separated elements), ``ion``, ``sg`` (comma-separated
    numbers), ``system`` (crystal system), ``natoms``, ``formation_energy``, ``band_gap``,
    ``e_above_hull``, ``voltage``.

    Examples
    --------
    >>> parse_conditions("allowed=Li,Fe,P,O;ion=Li;natoms=14").n_atoms
    14
    """
    kw: dict = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f"condition {part!r} is not key=value")
        if key in ("allowed", "required"):
            kw[f"{key}_elements"] = tuple(e.strip() for e in value.split(",") if e.strip())
        elif key == "ion":
            kw["working_ion"] = value
        elif key == "sg":
            kw["spacegroups"] = tuple(int(v) for v in value.split(","))
        elif key == "system":
            kw["spacegroups"] = spacegroups_of_system(value)
        elif key == "natoms":
            kw["n_atoms"] = int(value)
        elif key in ("formation_energy", "band_gap", "e_above_hull", "voltage"):
            kw[key] = float(value)
        else:
            raise ValueError(f"unknown condition {key!r}")
    return Conditions(**kw)


def conditions_around(structure, working_ion: str | None = None) -> Conditions:
    """Conditions that seed generation from a known structure: its elements, space group and size.

    Elements become the allowed set (plus the working ion), the space group found
    (spglib, symprec 0.1) is asked for, and the primitive-cell size is kept when it
    is within the model's range.
    """
    from battgai.materials.checks.validate import spacegroup_found

    els = tuple(sorted(el.symbol for el in structure.composition.elements))
    prim = structure.get_primitive_structure(tolerance=0.1)
    return Conditions(allowed_elements=tuple(dict.fromkeys((*els, *([working_ion] if working_ion else [])))),
                      spacegroups=(spacegroup_found(structure),),
                      n_atoms=len(prim) if len(prim) <= tk.MAX_ATOMS else None, working_ion=working_ion)
