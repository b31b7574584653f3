"""``python -m battgai verify CIF... [--dft] [--preset screen|accurate] [--as-given] [--json]``.

Without ``--dft``: the materials page's checks of each crystal (validity, newness against every known phase, the
potential's energy and E_hull after its relaxation, battery metrics with ``--ion``). With ``--dft``: the same
crystal and its decomposition phases computed with DFT (:func:`battgai.materials.dft.verify.verify`),
the potential's E_hull beside DFT's, and a verdict. ``--json`` prints one JSON object per crystal, a
line each; a CIF that cannot be read gets a line with its ``error``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _read(paths: list[Path]) -> tuple[list, list[dict]]:
    from battgai.uploads import UploadError, read_cif

    structures, failed = [], []
    for p in paths:
        try:
            structures.append((p, read_cif(p.read_bytes())))
        except (OSError, UploadError) as exc:
            failed.append({"file": str(p), "error": str(exc)})
    return structures, failed


def _page_checks(structures: list, as_given: bool, ion: str | None, potential: str) -> list[dict]:
    from battgai.materials.checks.evaluate import verdict
    from battgai.materials.checks.references import known_phases, reference_phases
    from battgai.materials.generation.sample import Conditions
    from battgai.materials.pipeline import add_energies, check

    known, novelty_line = known_phases()
    refs, refs_line = reference_phases(potential)
    sys.stderr.write(f"{novelty_line}\n{refs_line}\n")
    cands = [check(s, Conditions(working_ion=ion), known, source="uploaded") for _, s in structures]
    add_energies(cands, refs, ion, relax=not as_given, potential=potential)
    rows = []
    for (path, _), c in zip(structures, cands, strict=True):
        row = c.row()
        rows.append({"file": str(path), **row, "stability": verdict(c.e_above_hull),
                     "e_above_hull_dft": math.nan, "verdict": ""})
    return rows


def _dft_checks(structures: list, preset: str, as_given: bool, potential: str, workers: int) -> list[dict]:
    from battgai.materials.checks.references import known_phases
    from battgai.materials.checks.validate import known_match
    from battgai.materials.dft.verify import verify

    known, novelty_line = known_phases()
    sys.stderr.write(novelty_line + "\n")

    def progress(done: int, total: int, label: str) -> None:
        sys.stderr.write(f"\r[{done}/{total}] {label[:70]:70s}")
        sys.stderr.flush()

    checks = verify([s for _, s in structures], preset, as_given=as_given, potential=potential, workers=workers,
                    progress=progress)
    sys.stderr.write("\n")
    rows = []
    for (path, s), c in zip(structures, checks, strict=True):
        match = None if known is None else known_match(s, known)
        rows.append({"file": str(path), "new": None if known is None else match is None,
                     "matches_known": match or "", **c.row()})
    return rows


def _line(row: dict, dft: bool) -> str:
    novel = {True: "new", False: f"known: {row['matches_known']}", None: "newness not checked"}[row["new"]]
    parts = [f"{row['file']}: {row['formula']} ({novel})", f"E_hull {row['e_above_hull']:+.3f} eV/atom"]
    if dft:
        parts[-1] += f", DFT {row['e_above_hull_dft']:+.3f} ({row['verdict']})"
    else:
        parts[-1] += f" ({row['stability']})"
        if math.isfinite(row["voltage"]) or math.isfinite(row["capacity_mAh_g"]):
            parts.append(f"{row['voltage']:.2f} V, {row['capacity_mAh_g']:.0f} mAh/g")
    return "; ".join(parts + ([row["note"]] if row.get("note") else []))


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("cifs", nargs="+", type=Path, metavar="CIF")
    g.add_argument("--dft", action="store_true", help="check with DFT (GPAW, PBE, MP's settings): slow, "
                                                      "about a minute per 4-atom cell and per reference phase")
    g.add_argument("--preset", choices=("screen", "accurate"), default="screen",
                   help="screen: single point, 400 eV, k-density 3; accurate: 520 eV, k-density 4, DFT relaxation")
    g.add_argument("--as-given", action="store_true",
                   help="skip the potential's relaxation (structures already relaxed by DFT)")
    g.add_argument("--potential", choices=("chgnet", "sevennet"), default="chgnet")
    g.add_argument("--ion", default=None, help="working ion for voltage and capacity (without --dft)")
    g.add_argument("--workers", type=int, default=1, help="DFT calculations at once on the engine's Ray workers")
    g.add_argument("--json", action="store_true", help="one JSON object per crystal, a line each")


def run_cli(args: argparse.Namespace) -> int:
    from battgai.materials.dft.calculator import DFTError

    if args.ion is not None and args.dft:
        print("python -m battgai verify: error: --ion applies without --dft", file=sys.stderr)
        return 2
    structures, failed = _read(args.cifs)
    try:  # what the libraries print (CHGNet's banner) goes to stderr: stdout holds the results only
        with contextlib.redirect_stdout(sys.stderr):
            rows = (_dft_checks(structures, args.preset, args.as_given, args.potential, args.workers) if args.dft
                    else _page_checks(structures, args.as_given, args.ion, args.potential)) if structures else []
    except DFTError as exc:
        print(f"python -m battgai verify: {exc}", file=sys.stderr)
        return 1
    for row in [*rows, *failed]:
        if args.json:
            print(json.dumps({k: _json_value(v) for k, v in row.items()}))
        elif "error" in row:
            print(f"{row['file']}: {row['error']}")
        else:
            print(_line(row, args.dft))
    return 1 if failed else 0
