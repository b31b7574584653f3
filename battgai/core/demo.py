"""Small demo objects the project makes itself, used when the shared data is absent."""

from __future__ import annotations

import functools

from pymatgen.core import Lattice, Structure


@functools.cache
def licoo2() -> Structure:
    """Layered LiCoO2 (R-3m), a = 2.816 A, c = 14.05 A, O at z = 0.2396.

    References
    ----------
    Akimoto, Gotoh, Oosawa, J. Solid State Chem. 141, 298 (1998).
    """
    return Structure.from_spacegroup(
        "R-3m",
        Lattice.hexagonal(2.816, 14.05),
        ["Li", "Co", "O"],
        [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2396]],
    )
