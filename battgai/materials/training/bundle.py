"""Rebuild the bundled files (:mod:`battgai.materials.checks.bundle`) from the shared data.

``python -m battgai bundle``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from battgai.core.registry import sha256_file
from battgai.materials.checks.bundle import BUNDLE_DIR, KNOWN_FILE, MANIFEST, REBUILD, REFERENCES_FILE, Progress


def build_known_index(frame, progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Arrays of :class:`~battgai.materials.checks.bundle.KnownPhases` from
    :func:`~battgai.materials.training.corpus.known_phase_cifs` (CIFs parsed here), and the failures by reason.

    Structures are bucketed by reduced formula, each bucket in the frame's order. A CIF pymatgen cannot
    parse is left out and counted: it could not be matched against anyway. Lattices and coordinates are
    float32: 1e-6 A is five orders below StructureMatcher's tolerances, and it keeps 47k structures
    under 10 MB.
    """
    from collections import defaultdict

    from battgai.materials.checks.validate import _parse_cif
    from battgai.materials.training.corpus import KNOWN_SOURCES

    buckets: dict[str, list] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for k, (mid, source, training, cif) in enumerate(frame.itertuples(index=False)):
        try:
            s = _parse_cif(cif)
        except Exception as exc:  # any CIF pymatgen refuses: counted by exception type
            failed[type(exc).__name__] += 1
            continue
        buckets[s.composition.reduced_formula].append((mid, KNOWN_SOURCES.index(source), training, s))
        if progress and ((k + 1) % 2000 == 0 or k + 1 == len(frame)):
            progress(k + 1, len(frame))
    _parse_cif.cache_clear()
    rows = [r for members in buckets.values() for r in members]
    count = np.array([len(m) for m in buckets.values()], dtype=np.int32)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int32)
    arrays = {"formulas": np.array(list(buckets)), "start": start, "count": count,
              "ids": np.array([r[0] for r in rows]),
              "source": np.array([r[1] for r in rows], dtype=np.uint8), "source_names": np.array(KNOWN_SOURCES),
              "training": np.array([r[2] for r in rows], dtype=bool),
              "natoms": np.array([len(r[3]) for r in rows], dtype=np.int16),
              "lattices": np.array([r[3].lattice.matrix for r in rows], dtype=np.float32),
              "numbers": np.array([site.specie.Z for r in rows for site in r[3]], dtype=np.uint8),
              "frac": np.concatenate([r[3].frac_coords for r in rows]).astype(np.float32)}
    return arrays, dict(failed)


def build_known(folder: Path, progress: Progress | None = None) -> dict:
    """Write the known-phase index; returns its manifest entry."""
    from battgai.materials.training.corpus import known_phase_cifs

    arrays, failed = build_known_index(known_phase_cifs(), progress)
    np.savez_compressed(folder / KNOWN_FILE, **arrays)
    return {"sha256": sha256_file(folder / KNOWN_FILE), "bytes": (folder / KNOWN_FILE).stat().st_size,
            "structures": len(arrays["natoms"]), "training": int(arrays["training"].sum()),
            "formulas": len(arrays["formulas"]), "unparsed": failed,
            "sources": {str(n): int((arrays["source"] == k).sum()) for k, n in enumerate(arrays["source_names"])}}


def build_references(folder: Path, progress: Progress | None = None) -> dict:
    """Write the MP-20 reference energies (computed where the app's energy cache lacks them, about 25 ms per
    structure on one CPU core with CHGNet); returns their manifest entry."""
    from battgai.materials.checks.stability import ELEMENT_PROTOTYPES, ReferencePhases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = ReferencePhases.from_mp20(potential="chgnet")
        refs.cache.get_many(refs.ids, refs._structure, progress)
        refs._add_missing_elements(frozenset(ELEMENT_PROTOTYPES))
    ids = list(refs.ids)
    energies = np.array([refs.cache.values[i] for i in ids], dtype=np.float64)
    formulas = [c.formula.replace(" ", "") for c in refs.comps]
    np.savez_compressed(folder / REFERENCES_FILE, ids=np.array(ids), formulas=np.array(formulas),
                        energies=energies, potential=np.array("chgnet"))
    return {"sha256": sha256_file(folder / REFERENCES_FILE), "bytes": (folder / REFERENCES_FILE).stat().st_size,
            "phases": len(ids), "without_energy": int(np.isnan(energies).sum()),
            "prototypes": sum(i.startswith("proto:") for i in ids)}


#: What ``python -m battgai bundle --part`` rebuilds.
PARTS = {"known": (KNOWN_FILE, build_known), "references": (REFERENCES_FILE, build_references)}


def build(folder: Path = BUNDLE_DIR, progress: Progress | None = None, parts: tuple[str, ...] = tuple(PARTS)) -> dict:
    """Rebuild the bundled files ``parts`` from the shared data (``BATTGAI_DATA_DIR``) and update the manifest."""
    import chgnet

    t0 = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {"files": {}}
    for part in parts:
        name, fn = PARTS[part]
        manifest["files"][name] = fn(folder, progress)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k in {n for n, _ in PARTS.values()}}
    manifest.update(potential=f"CHGNet 0.3.0 weights of the chgnet {chgnet.__version__} package (static energies)",
                    built=time.strftime("%Y-%m-%d"), build_seconds=round(time.time() - t0), command=REBUILD)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _print_progress(done: int, total: int) -> None:
    print(f"  {done:,} / {total:,}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m battgai bundle [--part known|references]``: rebuild bundled files, print the manifest."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m battgai bundle", description=main.__doc__)
    ap.add_argument("--part", choices=sorted(PARTS), action="append",
                    help="rebuild only this file (repeatable; default: every file)")
    args = ap.parse_args(argv)
    print(json.dumps(build(progress=_print_progress, parts=tuple(args.part or PARTS)), indent=1))
