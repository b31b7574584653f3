"""Turn a :class:`~battgai.materials.generation.tokenizer.WyckoffCrystal` into a pymatgen ``Structure``.

Each representative coordinate is projected onto its Wyckoff position (so the
fixed coordinates of a special position are exact) and expanded to its orbit
with the position's symmetry operations; the lattice parameters are made
consistent with the crystal system. The space group is therefore guaranteed by
construction up to the symmetry tolerance.
"""

from __future__ import annotations

import functools

import numpy as np

from battgai.materials.generation.tokenizer import WyckoffCrystal, wyckoff_table


class BuildError(ValueError):
    """The Wyckoff description does not make a crystal (reason in the message)."""


@functools.cache
def _group(sg: int):
    from pyxtal.symmetry import Group

    return Group(sg)


@functools.cache
def wyckoff_ops(sg: int, letter: str) -> tuple[np.ndarray, np.ndarray]:
    """Affine (4, 4) projection onto Wyckoff position ``letter`` of ``sg`` and the (k, 4, 4) operations of its orbit."""
    wp = {wp.letter: wp for wp in _group(sg)}.get(letter)
    if wp is None:
        raise BuildError(f"space group {sg} has no Wyckoff position {letter!r}")
    return wp.ops[0].affine_matrix, np.array([op.affine_matrix for op in wp.ops])


def orbit(sg: int, letter: str, xyz) -> np.ndarray:
    """Fractional coordinates of the orbit of ``xyz`` projected onto Wyckoff position ``letter`` of ``sg``.

    Parameters
    ----------
    sg : int
        Space-group number.
    letter : str
        Wyckoff letter.
    xyz : array_like, shape (..., 3)
        Representative coordinates; a stack of them gives a stack of orbits.

    Returns
    -------
    ndarray, shape (..., multiplicity, 3)
        Coordinates in [0, 1).

    Raises
    ------
    BuildError
        ``sg`` has no Wyckoff position ``letter``.
    """
    proj, ops = wyckoff_ops(sg, letter)
    xyz = np.asarray(xyz, dtype=float)
    rep = np.concatenate([xyz, np.ones((*xyz.shape[:-1], 1))], axis=-1) @ proj.T
    return np.mod(np.inner(rep, ops)[..., :3], 1.0)


def symmetrize_lattice(sg: int, params):
    """Lattice parameters obeying the constraints of space group ``sg``'s crystal system.

    ``params`` is ``(a, b, c, alpha, beta, gamma)``, or an array (..., 6) of them (then an array
    is returned): equal lengths are averaged, fixed angles set.
    """
    p = np.array(params, dtype=float)
    system = wyckoff_table().crystal_system[sg]
    if system == "cubic":
        p[..., :3] = p[..., :3].sum(-1, keepdims=True) / 3
    elif system in ("hexagonal", "trigonal", "tetragonal"):
        p[..., :2] = p[..., :2].sum(-1, keepdims=True) / 2
    if system in ("hexagonal", "trigonal"):
        p[..., 3:] = (90.0, 90.0, 120.0)
    elif system == "monoclinic":
        p[..., [3, 5]] = 90.0
    elif system != "triclinic":
        p[..., 3:] = 90.0
    return tuple(p.tolist()) if p.ndim == 1 else p


def to_structure(crystal: WyckoffCrystal, primitive: bool = True):
    """Build the crystal; ``primitive`` reduces centred cells to their primitive cell.

    Raises
    ------
    BuildError
        Unknown Wyckoff letter for the group, degenerate lattice, or no sites.
    """
    from pymatgen.core import Lattice, Structure

    if not crystal.sites:
        raise BuildError("no atoms")
    species, coords = [], []
    for site in crystal.sites:
        xyz = orbit(crystal.spacegroup, site.letter, site.xyz)
        species += [site.element] * len(xyz)
        coords.append(xyz)
    params = symmetrize_lattice(crystal.spacegroup, crystal.lattice)
    try:
        lattice = Lattice.from_parameters(*params)
    except Exception as exc:
        raise BuildError(f"impossible lattice parameters {params}: {exc}") from exc
    if not np.isfinite(lattice.volume) or lattice.volume <= 0:
        raise BuildError(f"degenerate lattice {params}")
    s = Structure(lattice, species, np.concatenate(coords))
    if primitive and wyckoff_table().centering[crystal.spacegroup] > 1:
        s = s.get_primitive_structure(tolerance=0.1)
    return s
