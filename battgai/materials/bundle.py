"""The MP-20 reference data bundled with the code, so novelty and E_hull work on a fresh clone.

Two small files derived from the shared data live in ``battgai/materials/data/``:

- ``mp20_novelty_index.npz``: every training structure novelty is judged against
  (what :func:`battgai.materials.corpus.training_cifs_by_formula` holds: the
  non-held-out MP-20 rows and the discharged insertion-electrode structures of
  the working ions), as lattice, atomic numbers and fractional coordinates, in
  float64, bucketed by reduced formula in the same order. Structures rebuilt
  from it are the ones the CIFs parse to, so novelty is the same either way.
- ``mp20_references_chgnet.npz``: every MP-20 reference phase on hand (formula
  and static CHGNet energy per atom, as :class:`~battgai.materials.stability.EnergyCache`
  computes them) plus the relaxed elemental prototypes that stand in for
  missing elemental phases: E_hull needs only compositions and energies.

``mp20_bundle.json`` records each file's sha256, size, counts, the potential
and the command that rebuilt them; the files are refused when a hash differs.
When the shared data is present it stays the source of truth for novelty, and
the bundled energies only spare recomputing the same numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from battgai.registry import sha256_file

BUNDLE_DIR = Path(__file__).resolve().parent / "data"
NOVELTY_FILE = "mp20_novelty_index.npz"
REFERENCES_FILE = "mp20_references_chgnet.npz"
MANIFEST = "mp20_bundle.json"
REBUILD = "python -m battgai.materials.bundle"
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


class NoveltyIndex(Mapping):
    """Reduced formula -> training structures (pymatgen ``Structure``), built on first use of a formula.

    Usable wherever :func:`battgai.materials.validate.is_novel` takes ``known_by_formula``.
    """

    def __init__(self, formulas: np.ndarray, start: np.ndarray, count: np.ndarray, natoms: np.ndarray,
                 lattices: np.ndarray, numbers: np.ndarray, frac: np.ndarray):
        self._bucket = {str(f): (int(s), int(c)) for f, s, c in zip(formulas, start, count, strict=True)}
        self._natoms, self._lattices, self._numbers, self._frac = natoms, lattices, numbers, frac
        self._atom_start = np.concatenate([[0], np.cumsum(natoms)])
        self._built: dict[str, list] = {}

    def __getitem__(self, formula: str) -> list:
        if formula not in self._built:
            s, c = self._bucket[formula]  # KeyError for an unknown formula, as for a dict
            self._built[formula] = [self._structure(i) for i in range(s, s + c)]
        return self._built[formula]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bucket)

    def __len__(self) -> int:
        return len(self._bucket)

    @property
    def n_structures(self) -> int:
        return len(self._natoms)

    def _structure(self, i: int):
        from pymatgen.core import Lattice, Structure

        a, b = self._atom_start[i], self._atom_start[i + 1]
        return Structure(Lattice(self._lattices[i]), self._numbers[a:b].tolist(), self._frac[a:b])


@functools.cache
def load_novelty_index(folder: Path | None = None) -> NoveltyIndex:
    """The bundled training structures for novelty checks (:class:`NoveltyIndex`)."""
    z = np.load(_checked(NOVELTY_FILE, folder), allow_pickle=False)
    return NoveltyIndex(z["formulas"], z["start"], z["count"], z["natoms"], z["lattices"], z["numbers"],
                        z["frac"])


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


def known_structures() -> tuple[Mapping | None, str]:
    """Training structures to judge novelty against, and a line saying which ones are in use.

    The shared MP-20 data when ``BATTGAI_DATA_DIR`` has it, else the bundled index, else ``None``.
    """
    from battgai import data
    from battgai.materials.corpus import training_cifs_by_formula

    try:
        known = training_cifs_by_formula()
        return known, f"novelty vs the shared MP-20 data ({sum(map(len, known.values())):,} training structures)"
    except data.DataNotFound:
        pass
    try:
        index = load_novelty_index()
    except BundleError as exc:
        return None, f"novelty not checked: no shared MP-20 data and {exc}"
    return index, f"novelty vs the bundled index ({index.n_structures:,} training structures; no shared data found)"


def reference_phases(potential: str = "chgnet"):
    """MP-20 reference phases for E_hull with ``potential``, and a line saying which ones are in use.

    The shared MP-20 data when present (bundled CHGNet energies spare recomputing), else the
    bundle (CHGNet only), else ``None``.
    """
    from battgai import data
    from battgai.materials.stability import POTENTIAL_LABELS, ReferencePhases

    try:
        refs = ReferencePhases.from_mp20(potential)
        return refs, f"E_hull vs the shared MP-20 data ({len(refs.ids):,} phases)"
    except data.DataNotFound:
        pass
    if potential != "chgnet":
        return None, (f"no E_hull with {POTENTIAL_LABELS[potential]}: the bundled reference energies are CHGNet's; "
                      "the shared MP-20 data (BATTGAI_DATA_DIR) is needed for other potentials")
    try:
        refs = ReferencePhases.from_bundle()
    except BundleError as exc:
        return None, f"no E_hull: no shared MP-20 data and {exc}"
    return refs, f"E_hull vs the bundled MP-20 references ({len(refs.ids):,} phases, CHGNet; no shared data found)"


def build_novelty_index(known: Mapping[str, list[str]], progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Arrays of :class:`NoveltyIndex` from reduced formula -> CIF texts (parsed here)."""
    from battgai.materials.validate import _parse_cif

    formulas, start, count, natoms, lattices, numbers, frac = [], [], [], [], [], [], []
    total = sum(len(v) for v in known.values())
    done = 0
    for formula, cifs in known.items():
        formulas.append(formula)
        start.append(len(natoms))
        count.append(len(cifs))
        for cif in cifs:
            s = _parse_cif(cif)
            natoms.append(len(s))
            lattices.append(s.lattice.matrix)
            numbers.extend(site.specie.Z for site in s)
            frac.append(s.frac_coords)
            done += 1
            if progress and (done % 1000 == 0 or done == total):
                progress(done, total)
    return {"formulas": np.array(formulas), "start": np.array(start, dtype=np.int32),
            "count": np.array(count, dtype=np.int32), "natoms": np.array(natoms, dtype=np.int16),
            "lattices": np.array(lattices, dtype=np.float64), "numbers": np.array(numbers, dtype=np.uint8),
            "frac": np.concatenate(frac).astype(np.float64)}


def build(folder: Path = BUNDLE_DIR, progress: Progress | None = None) -> dict:
    """Rebuild both bundled files and the manifest from the shared data (``BATTGAI_DATA_DIR``).

    Reference energies come from the app's energy cache and are computed where
    missing (about 25 ms per structure on one CPU core with CHGNet).
    """
    import chgnet

    from battgai.materials.corpus import training_cifs_by_formula
    from battgai.materials.stability import ELEMENT_PROTOTYPES, ReferencePhases

    t0 = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    known = training_cifs_by_formula()
    np.savez_compressed(folder / NOVELTY_FILE, **build_novelty_index(known, progress))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = ReferencePhases.from_mp20(potential="chgnet")
        refs.cache.get_many(refs.ids, refs._structure, progress)  # computes what the cache lacks
        refs._add_missing_elements(frozenset(ELEMENT_PROTOTYPES))
    ids = list(refs.ids)
    energies = np.array([refs.cache.values[i] for i in ids], dtype=np.float64)
    formulas = [c.formula.replace(" ", "") for c in refs.comps]
    np.savez_compressed(folder / REFERENCES_FILE, ids=np.array(ids), formulas=np.array(formulas),
                        energies=energies, potential=np.array("chgnet"))
    files = {}
    for name in (NOVELTY_FILE, REFERENCES_FILE):
        files[name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    files[NOVELTY_FILE]["structures"] = int(sum(len(v) for v in known.values()))
    files[NOVELTY_FILE]["formulas"] = len(known)
    files[REFERENCES_FILE].update(phases=len(ids), without_energy=int(np.isnan(energies).sum()),
                                  prototypes=sum(i.startswith("proto:") for i in ids))
    manifest = {"potential": f"CHGNet 0.3.0 weights of the chgnet {chgnet.__version__} package (static energies)",
                "built": time.strftime("%Y-%m-%d"), "build_seconds": round(time.time() - t0),
                "command": REBUILD, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _print_progress(done: int, total: int) -> None:
    print(f"  {done:,} / {total:,}", flush=True)


if __name__ == "__main__":
    m = build(progress=_print_progress)
    print(json.dumps(m, indent=1))
