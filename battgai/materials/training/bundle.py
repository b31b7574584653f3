"""Rebuild the bundled MP-20 files (:mod:`battgai.materials.checks.bundle`) from the shared data.

``python -m battgai bundle``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from battgai.core.registry import sha256_file
from battgai.materials.checks.bundle import BUNDLE_DIR, MANIFEST, NOVELTY_FILE, REBUILD, REFERENCES_FILE, Progress


def build_novelty_index(known: Mapping[str, list[str]], progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Arrays of :class:`NoveltyIndex` from reduced formula -> CIF texts (parsed here)."""
    from battgai.materials.checks.validate import _parse_cif

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

    from battgai.materials.checks.stability import ELEMENT_PROTOTYPES, ReferencePhases
    from battgai.materials.training.corpus import training_cifs_by_formula

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


def main(argv: list[str] | None = None) -> None:
    """``python -m battgai bundle``: rebuild the bundled files from the shared data and print the manifest."""
    del argv  # no options: the bundle is always rebuilt whole
    print(json.dumps(build(progress=_print_progress), indent=1))
