"""Symmetry-aware token sequences for crystals (CrystalFormer-style).

A crystal becomes::

    BOS  FE BG EH V   SG   (WY EL X Y Z) * n_sites   LATT  a b c alpha beta gamma   EOS

``FE, BG, EH, V`` are condition tokens (binned formation energy, band gap,
energy above hull, average voltage; each has an "unknown" token so rows without
a property still train). ``SG`` is the space group, each Wyckoff site is its
letter, its element and the three fractional coordinates of its representative
(binned), and the lattice is given in the conventional cell of that space group.
Only symmetry-inequivalent sites are written, so a 4-atom cubic cell costs one
site, and space group / element / size constraints become masks on the logits.

References
----------
Cao et al., "Space Group Informed Transformer for Crystalline Materials
Generation" (CrystalFormer), arXiv:2403.15734 (2024).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np

#: Wyckoff letters in ITA order (Pmmm has 27 positions, the last one is 'A').
WYCKOFF_LETTERS = "abcdefghijklmnopqrstuvwxyzA"
MAX_Z = 103
COORD_BINS = 96  # 96 = 8 * 12, so 1/2, 1/3, 1/4, 1/6, 1/8 and 1/12 are exact bins
LENGTH_BINS = 256
LENGTH_MIN, LENGTH_MAX = 1.5, 80.0  # angstrom, log-spaced bins
ANGLE_BINS = 180  # one degree each
MAX_SITES = 20
MAX_ATOMS = 20  # atoms per primitive cell, as in MP-20

#: Property bins: edges (values below the first edge fall in bin 0).
FE_EDGES = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0)  # formation energy, eV/atom
BG_EDGES = (0.01, 1.0, 2.0, 3.0, 5.0)  # band gap, eV (bin 0 = metal)
EH_EDGES = (0.001, 0.05, 0.1, 0.2)  # energy above hull, eV/atom (bin 0 = on hull)
V_EDGES = (1.0, 2.0, 3.0, 4.0)  # average voltage vs metal, V
PROPERTIES = {"formation_energy": FE_EDGES, "band_gap": BG_EDGES, "e_above_hull": EH_EDGES, "voltage": V_EDGES}

PAD, BOS, EOS, LATT = 0, 1, 2, 3


def _layout() -> dict[str, tuple[int, int]]:
    sizes = [(name, len(edges) + 2) for name, edges in PROPERTIES.items()]  # bins + unknown
    sizes += [("sg", 230), ("wy", len(WYCKOFF_LETTERS)), ("el", MAX_Z), ("coord", COORD_BINS),
              ("length", LENGTH_BINS), ("angle", ANGLE_BINS)]
    out, start = {}, 4
    for name, size in sizes:
        out[name] = (start, size)
        start += size
    return out


#: token group -> (first id, size)
LAYOUT = _layout()
VOCAB_SIZE = max(a + n for a, n in LAYOUT.values())
N_COND = len(PROPERTIES)
#: BOS + conditions + SG + sites + LATT + 6 lattice + EOS
SEQ_LEN = 1 + N_COND + 1 + 5 * MAX_SITES + 1 + 6 + 1


class TokenizeError(ValueError):
    """A crystal that cannot be written as a token sequence (reason in the message)."""


@dataclasses.dataclass(frozen=True)
class Site:
    """One symmetry-inequivalent site: Wyckoff letter, element symbol, representative coords."""

    letter: str
    element: str
    xyz: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class WyckoffCrystal:
    """A crystal in its space group: conventional lattice parameters plus Wyckoff sites."""

    spacegroup: int
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (A), alpha, beta, gamma (deg)
    sites: tuple[Site, ...]

    @property
    def n_atoms(self) -> int:
        """Atoms in the primitive cell."""
        table = wyckoff_table()
        mult = sum(int(table.multiplicity[self.spacegroup, WYCKOFF_LETTERS.index(s.letter)])
                   for s in self.sites)
        return mult // int(table.centering[self.spacegroup])


@dataclasses.dataclass(frozen=True)
class WyckoffTable:
    """Per space group: multiplicity and degrees of freedom of each Wyckoff letter (0 = absent)."""

    multiplicity: np.ndarray  # (231, 27) int, conventional-cell multiplicity
    dof: np.ndarray  # (231, 27) int, free coordinates of the position
    centering: np.ndarray  # (231,) conventional / primitive cell volume ratio
    crystal_system: tuple[str, ...]  # index = space group number ('' at 0)


_CENTERING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}


@functools.cache
def wyckoff_table() -> WyckoffTable:
    """Multiplicities and free parameters of all Wyckoff positions of the 230 groups (pyxtal)."""
    from pyxtal.symmetry import Group

    mult = np.zeros((231, len(WYCKOFF_LETTERS)), dtype=np.int64)
    dof = np.zeros_like(mult)
    cent = np.ones(231, dtype=np.int64)
    systems = [""]
    for n in range(1, 231):
        g = Group(n)
        for wp in g:
            i = WYCKOFF_LETTERS.index(wp.letter)
            mult[n, i] = wp.multiplicity
            dof[n, i] = int(wp.get_dof())
        cent[n] = _CENTERING[g.symbol[0]]
        systems.append(g.lattice_type)
    return WyckoffTable(mult, dof, cent, tuple(systems))


def property_token(name: str, value: float | None) -> int:
    """Condition token of a property value (``None`` / NaN gives the "unknown" token)."""
    edges = PROPERTIES[name]
    start, size = LAYOUT[name]
    if value is None or not np.isfinite(value):
        return start + size - 1
    return start + int(np.searchsorted(edges, value, side="right"))


def property_bin_label(name: str, b: int) -> str:
    """Human-readable range of bin ``b`` of property ``name``."""
    edges = PROPERTIES[name]
    if b == 0:
        return f"< {edges[0]:g}"
    if b == len(edges):
        return f">= {edges[-1]:g}"
    return f"{edges[b - 1]:g} .. {edges[b]:g}"


def _length_token(x: float) -> int:
    if not LENGTH_MIN <= x < LENGTH_MAX:
        raise TokenizeError(f"lattice length {x:.2f} A outside [{LENGTH_MIN}, {LENGTH_MAX})")
    u = np.log(x / LENGTH_MIN) / np.log(LENGTH_MAX / LENGTH_MIN)
    return LAYOUT["length"][0] + min(int(u * LENGTH_BINS), LENGTH_BINS - 1)


def lattice_value(tok: int) -> float:
    """Lattice length (A, bin centre on the log scale) or angle (degrees, bin centre) of a lattice token."""
    s, size = LAYOUT["angle"]
    if s <= tok < s + size:
        return float(tok - s) + 0.5
    u = (tok - LAYOUT["length"][0] + 0.5) / LENGTH_BINS
    return float(LENGTH_MIN * (LENGTH_MAX / LENGTH_MIN) ** u)


def _coord_token(x: float) -> int:
    return LAYOUT["coord"][0] + int(np.rint((x % 1.0) * COORD_BINS)) % COORD_BINS


def encode(crystal: WyckoffCrystal, conditions: dict[str, float | None] | None = None) -> np.ndarray:
    """Token ids (length :data:`SEQ_LEN`, padded with PAD) of ``crystal``.

    Parameters
    ----------
    crystal : WyckoffCrystal
    conditions : dict, optional
        Property values by name (see :data:`PROPERTIES`); missing ones are "unknown".
    """
    from pymatgen.core import Element

    if len(crystal.sites) > MAX_SITES:
        raise TokenizeError(f"{len(crystal.sites)} Wyckoff sites; at most {MAX_SITES} are encoded")
    conditions = conditions or {}
    seq = [BOS] + [property_token(k, conditions.get(k)) for k in PROPERTIES]
    seq.append(LAYOUT["sg"][0] + crystal.spacegroup - 1)
    for site in crystal.sites:
        z = Element(site.element).Z
        if z > MAX_Z:
            raise TokenizeError(f"element {site.element} (Z={z}) is beyond Z={MAX_Z}")
        seq += [LAYOUT["wy"][0] + WYCKOFF_LETTERS.index(site.letter), LAYOUT["el"][0] + z - 1]
        seq += [_coord_token(c) for c in site.xyz]
    seq.append(LATT)
    seq += [_length_token(x) for x in crystal.lattice[:3]]
    for ang in crystal.lattice[3:]:
        seq.append(LAYOUT["angle"][0] + min(int(ang), ANGLE_BINS - 1))
    seq.append(EOS)
    out = np.full(SEQ_LEN, PAD, dtype=np.int16)
    out[: len(seq)] = seq
    return out


def decode(tokens: np.ndarray) -> WyckoffCrystal:
    """Inverse of :func:`encode` (up to binning); raises :class:`TokenizeError` on a malformed sequence."""
    from pymatgen.core import Element

    t = [int(x) for x in tokens]
    if len(t) < 2 + N_COND or t[0] != BOS:
        raise TokenizeError("sequence does not start with BOS + conditions")
    i = 1 + N_COND
    sg = t[i] - LAYOUT["sg"][0] + 1
    if not 1 <= sg <= 230:
        raise TokenizeError("no space group token")
    i += 1
    sites = []
    while i < len(t) and t[i] != LATT:
        if i + 5 > len(t):
            raise TokenizeError("truncated Wyckoff site")
        wy, el, *xyz = t[i: i + 5]
        letter = WYCKOFF_LETTERS[wy - LAYOUT["wy"][0]]
        coords = tuple((c - LAYOUT["coord"][0]) / COORD_BINS for c in xyz)
        sites.append(Site(letter, Element.from_Z(el - LAYOUT["el"][0] + 1).symbol, coords))
        i += 5
    if i + 7 > len(t):
        raise TokenizeError("sequence ends before the lattice")
    lat = t[i + 1: i + 7]
    return WyckoffCrystal(sg, tuple(lattice_value(x) for x in lat), tuple(sites))


def from_structure(structure, symprec: float = 0.01) -> WyckoffCrystal:
    """Wyckoff description of a pymatgen ``Structure`` (pyxtal symmetry finder, ``symprec`` in A).

    Sites are ordered by Wyckoff letter then atomic number, so equal crystals give equal sequences.
    """
    return _from_pyxtal(_pyxtal_of(structure, symprec))


def equivalent_forms(structure, symprec: float = 0.01) -> list[WyckoffCrystal]:
    """All Wyckoff descriptions of ``structure`` in the standard setting of its space group.

    The same crystal can be written with other Wyckoff letters and representative
    coordinates (an origin shift or an axis permutation of the group's Euclidean
    normalizer maps e.g. 4a <-> 4b in Fm-3m). The first form is :func:`from_structure`'s;
    the rest are the distinct alternatives pyxtal finds from the Wyckoff sets, for
    training-data augmentation.
    """
    x = _pyxtal_of(structure, symprec)
    forms = [_from_pyxtal(x)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            alternatives = x.get_alternatives()
        except Exception:  # pyxtal raises bare Exceptions; the first form is still valid
            alternatives = []
    for alt in alternatives:
        try:
            form = _from_pyxtal(alt)
        except TokenizeError:
            continue
        if form.spacegroup == forms[0].spacegroup and form not in forms:
            forms.append(form)
    return forms


def _pyxtal_of(structure, symprec: float):
    from pyxtal import pyxtal

    x = pyxtal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x.from_seed(structure, tol=symprec)
        except Exception as exc:  # pyxtal raises bare Exceptions for odd cells
            raise TokenizeError(f"symmetry analysis failed: {exc}") from exc
    return x


def _from_pyxtal(x) -> WyckoffCrystal:
    from pymatgen.core import Element

    if getattr(x.group, "hall_number", None) not in (None, _default_hall(x.group.number)):
        raise TokenizeError("non-standard setting")
    sites = [Site(s.wp.letter, str(s.specie), tuple(float(c) % 1.0 for c in s.position))
             for s in x.atom_sites]
    sites.sort(key=lambda s: (WYCKOFF_LETTERS.index(s.letter), Element(s.element).Z, s.xyz))
    a, b, c, al, be, ga = (float(v) for v in x.lattice.get_para(degree=True))
    return WyckoffCrystal(int(x.group.number), (a, b, c, al, be, ga), tuple(sites))


@functools.cache
def _default_hall(sg: int) -> int:
    from pyxtal.symmetry import Group

    return Group(sg).hall_number


def bin_value(name: str, b: int) -> float:
    """A value inside bin ``b`` of property ``name`` (the inverse of :func:`property_token` up to binning)."""
    edges = PROPERTIES[name]
    if not 0 <= b <= len(edges):
        raise ValueError(f"{name} has bins 0..{len(edges)}, got {b}")
    if b == 0:
        return edges[0] - 0.5
    if b == len(edges):
        return edges[-1] + 0.5
    return (edges[b - 1] + edges[b]) / 2
