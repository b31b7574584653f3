"""Cheap checks on generated crystals: structure, composition, uniqueness, novelty, symmetry.

Definitions follow CDVAE / DiffCSP / MatterGen so numbers compare with the literature.

References
----------
Xie et al., "Crystal Diffusion Variational Autoencoder for Periodic Material Generation", ICLR 2022
(structural validity, SMACT validity). Davies et al., "SMACT: Semiconducting Materials by Analogy and
Chemical Theory", JOSS 4 (2019). Zeni et al., "MatterGen", Nature 639 (2025) (uniqueness, novelty, S.U.N.).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

MIN_DISTANCE = 0.5  # angstrom
MIN_VOLUME = 0.1  # angstrom^3
#: Closest two atoms may come, as a share of the sum of their atomic radii (see :func:`contact_ratio`). Real MP-20
#: crystals sit above it; generated crystals below it mostly fuse or end far above the hull under a CHGNet
#: relaxation, so the sampler rejects them (both measured by ``python -m battgai.bench materials --contact-check``).
MIN_CONTACT_RATIO = 0.6


@functools.cache
def atomic_radius(z: int) -> float:
    """Slater's empirical atomic radius (A) of element ``z``; 0 where pymatgen has none (noble gases)."""
    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(Element.from_Z(z).atomic_radius or 0.0)


def contact_ratio(structure) -> float:
    """Shortest distance between two atoms (periodic images included) over the sum of their atomic radii.

    ``inf`` for a one-atom cell. Real crystals sit at about 0.7 or more; far below, atoms overlap.
    """
    if len(structure) < 2:
        return math.inf
    radii = np.array([atomic_radius(sp.Z) for sp in structure.species])
    total = radii[:, None] + radii[None]
    d = structure.distance_matrix
    np.fill_diagonal(d, np.inf)
    # A pair of elements without radii (noble gases) never counts as overlapping.
    return float(np.divide(d, total, out=np.full_like(d, np.inf), where=total > 0).min())


def min_distance(structure) -> float:
    """Shortest interatomic distance (A) including periodic images; ``inf`` for one atom in a big cell."""
    if len(structure) == 1:
        lat = structure.lattice
        return float(min(np.linalg.norm(v) for v in lat.matrix))
    d = structure.distance_matrix
    return float(d[np.triu_indices(len(structure), 1)].min())


def structural_valid(structure, min_dist: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME) -> bool:
    """All interatomic distances >= ``min_dist`` A and cell volume >= ``min_volume`` A^3 (CDVAE)."""
    return structure.volume >= min_volume and min_distance(structure) >= min_dist


def smact_valid(composition: Mapping[str, float] | object) -> bool:
    """SMACT charge neutrality + Pauling electronegativity test, alloys accepted (CDVAE convention).

    Parameters
    ----------
    composition : dict or pymatgen Composition
        Element symbol -> amount; amounts are reduced to the smallest integer ratio.

    Examples
    --------
    >>> smact_valid({"Li": 1, "Co": 1, "O": 2}), smact_valid({"Na": 1, "F": 2})
    (True, False)
    """
    items = {str(k): float(v) for k, v in dict(composition).items()}
    counts = [round(v) for v in items.values()]
    g = functools.reduce(math.gcd, counts) or 1
    return _smact_valid(tuple(items), tuple(c // g for c in counts))


@functools.cache
def smact_element(symbol: str):
    """SMACT's element data (built once: ``smact.Element`` rereads its tables on every construction)."""
    import smact

    return smact.Element(symbol)


@functools.cache
def _smact_valid(elements: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    import smact
    from smact.screening import pauling_test

    if len(set(elements)) == 1 or all(e in smact.metals for e in elements):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noble gases have no Pauling electronegativity
        smact_elems = [smact_element(e) for e in elements]
        electronegs = [e.pauling_eneg for e in smact_elems]
        states = [e.oxidation_states or [] for e in smact_elems]
        if not all(states):
            return False
        # CDVAE loops over every assignment of oxidation states and asks smact.neutral_ratios whether the
        # counts are neutral; with the counts fixed that is a dot product, so all assignments are summed at
        # once and only the neutral ones go to the electronegativity test (same answer, ~100x faster).
        charge = sum(np.meshgrid(*[np.asarray(q) * c for q, c in zip(states, counts, strict=True)],
                                 indexing="ij", sparse=True))
        for idx in np.argwhere(charge == 0):
            ox = tuple(q[j] for q, j in zip(states, idx, strict=True))
            try:
                if pauling_test(ox, electronegs):
                    return True
            except TypeError:  # an element without a Pauling electronegativity passes, as in CDVAE
                return True
    return False


@functools.cache
def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()  # default tolerances (ltol 0.2, stol 0.3, angle_tol 5), as in the literature


def unique_mask(structures: Sequence) -> list[bool]:
    """True for the first structure of every group of matching ones (StructureMatcher, default tolerances).

    Only structures with the same reduced formula are compared, which gives the
    same answer as all-pairs matching at a fraction of the cost.
    """
    seen: dict[str, list] = {}
    out = []
    for s in structures:
        bucket = seen.setdefault(s.composition.reduced_formula, [])
        dup = any(matches(s, t) for t in bucket)
        if not dup:
            bucket.append(s)
        out.append(not dup)
    return out


def matches(a, b) -> bool:
    """Whether two structures match (pymatgen StructureMatcher, default tolerances)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(_matcher().fit(a, b))


def is_novel(structure, known_by_formula: Mapping[str, Iterable]) -> bool:
    """No known structure of the same reduced formula matches (StructureMatcher).

    ``known_by_formula`` maps reduced formula -> structures (or CIF strings, parsed on demand).
    """

    for t in known_by_formula.get(structure.composition.reduced_formula, ()):
        if isinstance(t, str):
            t = _parse_cif(t)
        if matches(structure, t):
            return False
    return True


def known_match(structure, known_by_formula: Mapping[str, Iterable]) -> str | None:
    """What known structure ``structure`` matches: ``"<material id> (<source>)"`` when the index names its
    structures (:class:`~battgai.materials.checks.bundle.KnownPhases`), ``"a known structure"`` otherwise,
    ``None`` when it is new."""
    if hasattr(known_by_formula, "match"):
        hit = known_by_formula.match(structure)
        return None if hit is None else f"{hit[0]} ({hit[1]})"
    return None if is_novel(structure, known_by_formula) else "a known structure"


@functools.lru_cache(maxsize=20_000)
def _parse_cif(cif: str):
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")


def nearest_known(structure, known_by_formula: Mapping[str, Iterable]):
    """A known structure of the same reduced formula (the matching one if any), else ``None``."""
    candidates = [(_parse_cif(t) if isinstance(t, str) else t)
                  for t in known_by_formula.get(structure.composition.reduced_formula, ())]
    for t in candidates:
        if matches(structure, t):
            return t
    return candidates[0] if candidates else None


def spacegroup_found(structure, symprec: float = 0.1) -> int:
    """International space-group number found by spglib (pymatgen SpacegroupAnalyzer, ``symprec`` in A)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib fails on degenerate cells; report P1 rather than crash
        return 1
