"""The reference data bundled with the code, so "new" and E_hull are judged the same way on a fresh clone.

Two small files derived from the shared data live in ``battgai/materials/data/``:

- ``known_phases_index.npz``: every known phase on hand, what "new" is judged against
  (:func:`battgai.materials.training.corpus.known_phase_cifs`: all MP-20 splits, MPTS-52 val and
  test, every insertion-electrode structure; 47,185 crystals), as lattice, atomic numbers and
  fractional coordinates (float32), with material id, source and whether the generators trained on
  it, bucketed by reduced formula. Its training view is what the generator benchmark's novelty
  (CDVAE's convention) is judged against.
- ``mp20_references_chgnet.npz``: every MP-20 reference phase on hand (formula
  and static CHGNet energy per atom, as :class:`~battgai.materials.checks.stability.EnergyCache`
  computes them) plus the relaxed elemental prototypes that stand in for missing elemental phases:
  E_hull needs only compositions and energies.

``mp20_bundle.json`` records each file's sha256, size, counts, the potential
and the command that rebuilt them; the files are refused when a hash differs.
The known-phase index is used whether or not the shared data is present (one answer everywhere);
the bundled energies only spare recomputing the same numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from battgai.core.registry import sha256_file

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "data"
KNOWN_FILE = "known_phases_index.npz"
REFERENCES_FILE = "mp20_references_chgnet.npz"
MANIFEST = "mp20_bundle.json"
REBUILD = "python -m battgai bundle"
Progress = Callable[[int, int], None]


class BundleError(RuntimeError):
    """A bundled file is missing or does not match the hash it was committed with."""


def _checked(name: str, folder: Path | None) -> Path:
    folder = folder or BUNDLE_DIR
    path = folder / name
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"][name]["sha256"]
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"no entry for {name} in {folder / MANIFEST}; rebuild with `{REBUILD}`") from e
    if not path.exists():
        raise BundleError(f"bundled file {path} is missing; rebuild with `{REBUILD}`")
    if sha256_file(path) != expected:
        raise BundleError(f"bundled file {path} does not match its sha256 in {MANIFEST}; "
                          f"restore it with git or rebuild with `{REBUILD}`")
    return path


class KnownPhases(Mapping):
    """Reduced formula -> known structures (pymatgen ``Structure``), built on first use of a formula.

    Usable wherever :func:`battgai.materials.checks.validate.is_novel` takes ``known_by_formula``.
    Each structure keeps its material id and source (:data:`~battgai.materials.training.corpus.KNOWN_SOURCES`),
    so a match can be named (:meth:`match`). :meth:`training` is the view of the generator's training
    structures only, what the generator benchmark's novelty is judged against.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], keep: np.ndarray | None = None):
        self._a = arrays
        n = len(arrays["natoms"])
        self._keep = np.ones(n, bool) if keep is None else keep
        self._atom_start = np.concatenate([[0], np.cumsum(arrays["natoms"], dtype=np.int64)])
        self._bucket = {}
        for f, s, c in zip(arrays["formulas"], arrays["start"], arrays["count"], strict=True):
            members = [i for i in range(int(s), int(s + c)) if self._keep[i]]
            if members:
                self._bucket[str(f)] = members
        self._built: dict[str, list] = {}

    def __getitem__(self, formula: str) -> list:
        if formula not in self._built:
            self._built[formula] = [self._structure(i) for i in self._bucket[formula]]  # KeyError as for a dict
        return self._built[formula]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bucket)

    def __len__(self) -> int:
        return len(self._bucket)

    @property
    def n_structures(self) -> int:
        return int(self._keep.sum())

    def sources(self) -> dict[str, int]:
        """How many structures each source holds (in this view)."""
        codes = np.bincount(self._a["source"][self._keep], minlength=len(self._a["source_names"]))
        return {str(name): int(c) for name, c in zip(self._a["source_names"], codes, strict=True) if c}

    def training(self) -> KnownPhases:
        """The view of the structures the bundled generators were trained on (CDVAE's novelty reference)."""
        return KnownPhases(self._a, self._keep & self._a["training"])

    def match(self, structure) -> tuple[str, str] | None:
        """``(material id, source)`` of a known structure that ``structure`` matches (StructureMatcher), else None."""
        from battgai.materials.checks.validate import matches

        formula = structure.composition.reduced_formula
        if formula not in self._bucket:
            return None
        for i, t in zip(self._bucket[formula], self[formula], strict=True):
            if matches(structure, t):
                return str(self._a["ids"][i]), str(self._a["source_names"][self._a["source"][i]])
        return None

    def _structure(self, i: int):
        from pymatgen.core import Lattice, Structure

        a, b = self._atom_start[i], self._atom_start[i + 1]
        return Structure(Lattice(self._a["lattices"][i]), self._a["numbers"][a:b].tolist(), self._a["frac"][a:b])


@functools.cache
def load_known_phases(folder: Path | None = None) -> KnownPhases:
    """The bundled index of every known phase on hand (:class:`KnownPhases`)."""
    with np.load(_checked(KNOWN_FILE, folder), allow_pickle=False) as z:
        return KnownPhases({k: z[k] for k in z.files})


@dataclasses.dataclass(frozen=True)
class BundledReferences:
    """MP-20 reference phases with static energies of one potential (eV/atom, NaN where it failed)."""

    ids: np.ndarray
    formulas: np.ndarray
    energies: np.ndarray
    potential: str

    def values(self) -> dict[str, float]:
        return {str(i): float(e) for i, e in zip(self.ids, self.energies, strict=True)}


@functools.cache
def load_references(folder: Path | None = None) -> BundledReferences:
    """The bundled MP-20 reference phases and their CHGNet static energies."""
    z = np.load(_checked(REFERENCES_FILE, folder), allow_pickle=False)
    return BundledReferences(z["ids"], z["formulas"], z["energies"], str(z["potential"]))


def describe(folder: Path | None = None) -> dict:
    """The bundle manifest (counts, sizes, sha256, potential, how it was built)."""
    return json.loads(((folder or BUNDLE_DIR) / MANIFEST).read_text())
