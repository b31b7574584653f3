"""``python -m battgai bench dft``: what DFT (GPAW, the screen preset) says about known and generated crystals.

Three parts, each its own block of docs/BENCHMARKS.md and a JSON in ``artifacts/dft/``:

- ``accuracy``: DFT E_hull of held-out MP-20 test crystals, as given (MP relaxed them with PBE),
  against MP's ``e_above_hull``. Intermetallics, oxides / fluorides with +U and magnetic crystals,
  drawn with a fixed seed among the small ones (cost grows with the cube of the atom count).
- ``audit``: crystals that CHGNet calls stable, unique and novel (S.U.N.) from the bundled generators
  (the app's sampler, fixed seeds, relaxed with CHGNet), plus every suspect crystal met on the way:
  the share DFT confirms, per model, with a Wilson interval, and the suspect flag's precision.
- ``cost``: seconds per calculation by atom count and preset, and the same calculations on 1 and 2
  Ray workers.

Needs the shared MP-20 data (the reference structures). DFT energies of reference phases are kept in
the store, so a rerun computes only what is new.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from battgai.core.registry import REPO_ROOT

ARTIFACTS = REPO_ROOT / "artifacts" / "dft"
#: f-electron elements are left out of the accuracy set: their SCF is slow and fragile at screen settings.
LANTHANIDES = {"Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb"}


def _kind(elements: set[str]) -> str:
    from battgai.materials.dft.settings import DEFAULT_MAGMOM, mp_magmoms

    moments = mp_magmoms()
    if elements & {"O", "F"} and elements & {"Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W"}:
        return "oxide/fluoride +U"
    if any(moments.get(el, DEFAULT_MAGMOM) > DEFAULT_MAGMOM for el in elements):
        return "magnetic"
    from pymatgen.core import Element

    if all(Element(el).is_metal for el in elements):
        return "intermetallic"
    return "other"


def select_known(per_kind: dict[str, int], seed: int = 0, max_atoms: int = 6, max_ref_atoms: int = 10) -> list:
    """Held-out MP-20 test rows (with MP's E_hull) to check, ``per_kind`` of each :func:`_kind`.

    Only crystals of at most ``max_atoms`` atoms whose decomposition on the CHGNet hull (the crystal left
    out) and elemental phases have at most ``max_ref_atoms`` each, no lanthanides, every setup on hand.
    """
    from battgai.materials.checks.references import reference_phases
    from battgai.materials.checks.stability import static_energies
    from battgai.materials.checks.validate import _parse_cif
    from battgai.materials.dft.calculator import available_setups, primitive
    from battgai.materials.training.corpus import is_heldout, mp20_frame

    df = mp20_frame()
    df = df[(df.mp20_split == "test") & df.material_id.map(is_heldout) & df.e_above_hull.notna()]
    refs = reference_phases("chgnet")[0]
    rng = np.random.default_rng(seed)
    wanted, chosen = dict(per_kind), []
    for i in rng.permutation(len(df)):
        if not any(wanted.values()):
            break
        row = df.iloc[i]
        s = _parse_cif(row.cif)
        elements = {el.symbol for el in s.composition.elements}
        kind = _kind(elements)
        if (not wanted.get(kind) or elements & LANTHANIDES or not elements <= available_setups()
                or len(elements) < 2):
            continue
        s = primitive(s)
        if len(s) > max_atoms:
            continue
        e = float(static_energies([s])[0])
        h = refs.hull(s.composition, e, exclude=row.material_id)
        ids = [rid for rid, _ in h.decomposition] + [rid for _, rid in h.elemental]
        if not h.decomposition or any(len(primitive(refs._structure(rid))) > max_ref_atoms for rid in ids):
            continue
        wanted[kind] -= 1
        chosen.append((row, s, kind))
    return chosen


def accuracy(per_kind: dict[str, int], seed: int = 0, workers: int = 2) -> dict:
    """DFT E_hull of :func:`select_known` crystals against MP's, as given, each hull without the crystal itself."""
    from battgai.materials.dft.verify import verify

    chosen = select_known(per_kind, seed)
    t0 = time.time()
    checks = verify([s for _, s, _ in chosen], "screen", as_given=True, workers=workers,
                    exclude=[row.material_id for row, _, _ in chosen],
                    progress=lambda d, n, label: print(f"\r{d}/{n} {label[:70]:70s}", end="", flush=True))
    print()
    rows = []
    for (row, s, kind), c in zip(chosen, checks, strict=True):
        rows.append({"material_id": row.material_id, "formula": c.formula, "kind": kind, "n_atoms": len(s),
                     "mp_e_above_hull": float(row.e_above_hull), "mp_formation_energy": float(row.formation_energy),
                     "chgnet": c.e_above_hull_potential, "dft": c.e_above_hull, "dft_formation": c.formation_energy,
                     "verdict": c.verdict, "run_type": c.crystal.run_type if c.crystal else "",
                     "spin": bool(c.crystal and c.crystal.spin_polarised),
                     "decomposition": c.row()["decomposition"], "note": c.note or c.error,
                     "seconds": c.crystal.seconds if c.crystal else math.nan})
    ok = [r for r in rows if math.isfinite(r["dft"])]
    err = [abs(max(r["dft"], 0.0) - r["mp_e_above_hull"]) for r in ok]
    err_chgnet = [abs(max(r["chgnet"], 0.0) - r["mp_e_above_hull"]) for r in ok]
    return {"seed": seed, "per_kind": per_kind, "rows": rows, "n": len(rows), "n_compared": len(ok),
            "mae_dft": float(np.mean(err)) if err else math.nan,
            "median_dft": float(np.median(err)) if err else math.nan,
            "mae_chgnet": float(np.mean(err_chgnet)) if err_chgnet else math.nan,
            "wall_s": round(time.time() - t0, 1), "workers": workers}


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.{digits}f}"


def accuracy_markdown(r: dict) -> str:
    lines = [
        "### DFT vs MP on held-out known crystals (`python -m battgai bench dft --part accuracy`)", "",
        f"{r['n']} held-out MP-20 test crystals (seed {r['seed']}, at most 6 atoms, decomposition and elemental "
        "phases at most 10; no lanthanides), as given, screen preset; "
        "each crystal's hull leaves the crystal itself out. "
        "E_hull below 0 is set to 0 for the comparison (MP's hull holds the crystal). "
        f"Wall time {r['wall_s']:.0f} s on {r['workers']} Ray workers (2 cores).", "",
        f"**E_hull MAE vs MP: DFT {r['mae_dft']:.3f} eV/atom** (median {r['median_dft']:.3f}; target <= 0.03) on "
        f"{r['n_compared']} comparable; CHGNet on the same crystals {r['mae_chgnet']:.3f}.", "",
        "| crystal | kind | atoms | MP E_hull | CHGNet | DFT | DFT E_form (MP) | run | decomposition | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['formula']} ({x['material_id']}) | {x['kind']} | {x['n_atoms']} | {x['mp_e_above_hull']:.3f} | "
            f"{_f(x['chgnet'])} | {_f(x['dft'])} | {_f(x['dft_formation'])} ({x['mp_formation_energy']:+.3f}) | "
            f"{x['run_type']}{' spin' if x['spin'] else ''} | {x['decomposition']} | {x['note']} |")
    return "\n".join(lines)


def _save(name: str, result: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))


def main(argv: list[str] | None = None) -> None:
    from battgai.bench import write_subsection

    p = argparse.ArgumentParser(prog="python -m battgai bench dft")
    p.add_argument("--part", choices=("accuracy", "audit", "cost"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--intermetallics", type=int, default=12)
    p.add_argument("--oxides", type=int, default=6)
    p.add_argument("--magnetic", type=int, default=4)
    args = p.parse_args(argv)
    if args.part == "accuracy":
        r = accuracy({"intermetallic": args.intermetallics, "oxide/fluoride +U": args.oxides,
                      "magnetic": args.magnetic}, args.seed, args.workers)
        _save("accuracy", r)
        md = accuracy_markdown(r)
        write_subsection("dft", "dft-accuracy", md)
        print(md)
