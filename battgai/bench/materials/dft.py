"""``python -m battgai bench dft``: what DFT (GPAW, the screen preset) says about known and generated crystals.

Three parts, each its own block of docs/BENCHMARKS.md and a JSON in ``artifacts/dft/``:

- ``accuracy``: DFT E_hull of held-out MP-20 test crystals, as given (MP relaxed them with PBE),
  against MP's ``e_above_hull``. Intermetallics, oxides / fluorides with +U and magnetic crystals,
  drawn with a fixed seed among the small ones (cost grows with the cube of the atom count).
- ``audit``: crystals that CHGNet calls stable, unique and novel (S.U.N.) from the bundled generators
  (the app's sampler, fixed seeds, relaxed with CHGNet), plus as many suspect crystals met on the way:
  the share DFT confirms, per model, with a Wilson interval, and the suspect flag's precision.
- ``cost``: seconds per calculation by atom count and preset, and the same calculations on 1 and 2
  Ray workers.

Needs the shared MP-20 data (the reference structures). DFT energies of reference phases are kept in
the store, so a rerun computes only what is new.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np

from battgai.core.registry import REPO_ROOT

ARTIFACTS = REPO_ROOT / "artifacts" / "dft"
SCATTER = REPO_ROOT / "docs" / "dft_audit_scatter.png"
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


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.{digits}f}"


def _mae(rows: list[dict], key: str) -> float:
    return float(np.mean([abs(max(x[key], 0.0) - x["mp_e_above_hull"]) for x in rows])) if rows else math.nan


def accuracy_markdown(r: dict) -> str:
    ok = [x for x in r["rows"] if x["dft"] is not None and math.isfinite(x["dft"])]
    above = [x for x in ok if x["mp_e_above_hull"] > 0.005]
    below = [x for x in ok if x["dft"] < -0.005 and x["mp_e_above_hull"] <= 0.005]
    lines = [
        "### DFT vs MP on held-out known crystals (`python -m battgai bench dft --part accuracy`)", "",
        f"{r['n']} held-out MP-20 test crystals (seed {r['seed']}, at most 6 atoms, decomposition and elemental "
        "phases at most 10; no lanthanides), as given, screen preset; "
        "each crystal's hull leaves the crystal itself out. "
        "E_hull below 0 is set to 0 for the comparison (MP's hull holds the crystal). "
        f"Wall time {r['wall_s']:.0f} s on {r['workers']} Ray workers (2 cores).", "",
        f"**E_hull MAE vs MP: DFT {_mae(ok, 'dft'):.3f} eV/atom** (target <= 0.03; CHGNet {_mae(ok, 'chgnet'):.3f}) "
        f"on the {len(ok)} comparable. On the {len(above)} that MP puts above its hull (> 0.005), where the "
        f"comparison is not helped by the clip at 0: DFT {_mae(above, 'dft'):.3f}, CHGNet {_mae(above, 'chgnet'):.3f}. "
        f"{len(below)} of the on-hull ones DFT puts more than 0.005 below the phases named: MP's hull holds phases "
        "these references lack (MP-20 keeps crystals of at most 20 atoms and a part of MP's train split is not on "
        f"hand). Not compared: {len(r['rows']) - len(ok)} (the note says why: a +U oxide against a plain-GGA phase "
        "of its metal, or a reference past the time limit).", "",
        "| crystal | kind | atoms | MP E_hull | CHGNet | DFT | DFT E_form (MP) | run | decomposition | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['formula']} ({x['material_id']}) | {x['kind']} | {x['n_atoms']} | {x['mp_e_above_hull']:.3f} | "
            f"{_f(x['chgnet'])} | {_f(x['dft'])} | {_f(x['dft_formation'])} ({x['mp_formation_energy']:+.3f}) | "
            f"{x['run_type']}{' spin' if x['spin'] else ''} | {x['decomposition']} | {x['note']} |")
    return "\n".join(lines)


def _sampled_for_audit(model: str, n: int, seed: int, max_atoms: int, max_ref_atoms: int, refs, known,
                       skip: frozenset[str] = frozenset()) -> tuple[list, dict[str, int]]:
    """The app's sampler's crystals of ``model`` (unconditioned, guidance 2, ``seed``), relaxed with CHGNet:
    ``(kind, candidate)`` for every S.U.N. and suspect one whose DFT fits the size limits and that holds none of
    ``skip``, in sample order; and how many S.U.N. / suspect ones there were before the limits and ``skip``."""
    from battgai.materials.checks import evaluate
    from battgai.materials.dft.calculator import available_setups, primitive
    from battgai.materials.generation.sample import Conditions, load_model
    from battgai.materials.pipeline import add_energies, generate

    cands, _ = generate(load_model(model), Conditions(), n, seed, known=known, guidance=2.0)
    small = [c for c in cands if c.valid_structure and c.unique and c.novel
             and len(primitive(c.structure)) <= max_atoms
             and {el.symbol for el in c.structure.composition.elements} <= available_setups()]
    add_energies(small, refs, relax=True)
    out, seen = [], {"sun": 0, "suspect": 0, "sun_skipped": 0, "suspect_skipped": 0}
    for c in small:
        kind = "suspect" if evaluate.is_suspect(c.e_above_hull) else "sun" if evaluate.is_stable(c.e_above_hull) \
            else None
        if kind is None or c.novel is not True:
            continue
        seen[kind] += 1
        if {el.symbol for el in c.structure.composition.elements} & skip:
            seen[f"{kind}_skipped"] += 1
            continue
        h = refs.hull(c.structure.composition, c.e_per_atom)
        ids = [rid for rid, _ in h.decomposition] + [rid for _, rid in h.elemental]
        if all(len(primitive(refs._structure(rid))) <= max_ref_atoms for rid in ids):
            out.append((kind, c))
    return out, seen


def audit(models: tuple[str, ...], k: int, n_sample: int, seed: int, workers: int, max_atoms: int = 8,
          max_ref_atoms: int = 10, max_seconds: float | None = None, skip_lanthanides: bool = False) -> dict:
    """DFT of the first ``k`` CHGNet-S.U.N. crystals per model and the first ``k`` suspect ones (see module doc)."""
    from battgai.materials.checks.references import known_phases, reference_phases
    from battgai.materials.dft.verify import verify

    refs, known = reference_phases("chgnet")[0], known_phases()[0]
    picked, seen = [], {}
    for model in models:
        found, seen[model] = _sampled_for_audit(model, n_sample, seed, max_atoms, max_ref_atoms, refs, known,
                                                frozenset(LANTHANIDES) if skip_lanthanides else frozenset())
        sun = [c for kind, c in found if kind == "sun"][:k]
        suspect = [c for kind, c in found if kind == "suspect"][:k]
        picked += [(model, "sun", c) for c in sun] + [(model, "suspect", c) for c in suspect]
    from battgai.materials.dft.settings import PRESETS

    # The same numbers as the screen preset (same key: reference energies are shared), a shorter time limit.
    preset = dataclasses.replace(PRESETS["screen"], max_seconds=max_seconds or PRESETS["screen"].max_seconds)
    t0 = time.time()
    checks = verify([c.structure for _, _, c in picked], preset, refs=refs, as_given=True, workers=workers,
                    given_as="relaxed with chgnet",
                    progress=lambda d, n, label: print(f"\r{d}/{n} {label[:70]:70s}", end="", flush=True))
    print()
    rows = [{"model": m, "kind": kind, "formula": c.formula, "n_atoms": len(c.structure), "chgnet": c.e_above_hull,
             "dft": ch.e_above_hull, "verdict": ch.verdict, "decomposition": ch.row()["decomposition"],
             "note": ch.note or ch.error} for (m, kind, c), ch in zip(picked, checks, strict=True)]
    return {"models": list(models), "k": k, "n_sample": n_sample, "seed": seed, "max_atoms": max_atoms,
            "max_ref_atoms": max_ref_atoms, "max_seconds": preset.max_seconds, "rows": rows, "seen": seen,
            "skip_lanthanides": skip_lanthanides,
            "wall_s": round(time.time() - t0, 1), "workers": workers}


def _wilson(hits: int, n: int) -> str:
    if n == 0:
        return "n/a"
    z, rate = 1.96, hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * rate:.0f} % ({100 * max(centre - half, 0):.0f}-{100 * min(centre + half, 1):.0f} %)"


def audit_markdown(r: dict) -> str:
    lines = [
        "### Audit: what DFT says about CHGNet's S.U.N. crystals (`python -m battgai bench dft --part audit`)", "",
        f"The app's sampler, unconditioned, guidance 2, seed {r['seed']}, {r['n_sample']} crystals per model, relaxed "
        f"with CHGNet; the first {r['k']} S.U.N. ones per model (new, unique, CHGNet E_hull in [-0.05, 0.1)) and "
        f"the first {r['k']} suspect ones (more than 0.05 below the hull), among those of at most {r['max_atoms']} "
        f"atoms whose decomposition and elemental phases have at most {r['max_ref_atoms']}: DFT (screen) on the "
        f"CHGNet-relaxed structure against the decomposition recomputed with DFT, each calculation stopped after "
        f"{r['max_seconds']:.0f} s ('failed', with the reason). Wall time {r['wall_s']:.0f} s on {r['workers']} "
        "Ray workers. Interval: 95 % Wilson."
        + (" Crystals holding a lanthanide were left out (their f-electron SCF does not finish in that time at "
           "screen settings); how many, per model: "
           + "; ".join(f"{m}: {v['sun_skipped']} of {v['sun']} S.U.N., {v['suspect_skipped']} of {v['suspect']} "
                       "suspect" for m, v in r["seen"].items()) + "." if r.get("skip_lanthanides") else ""), "",
        "| model | S.U.N. audited | DFT confirms | refuted | not comparable / failed | suspect audited | "
        "suspect flag right (DFT E_hull >= 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in r["models"]:
        sun = [x for x in r["rows"] if x["model"] == m and x["kind"] == "sun"]
        judged = [x for x in sun if x["verdict"] in ("confirmed", "refuted")]
        sus = [x for x in r["rows"] if x["model"] == m and x["kind"] == "suspect" and math.isfinite(x["dft"])]
        lines.append(f"| {m} | {len(sun)} | {_wilson(sum(x['verdict'] == 'confirmed' for x in judged), len(judged))} "
                     f"| {sum(x['verdict'] == 'refuted' for x in judged)} | {len(sun) - len(judged)} | "
                     f"{sum(x['kind'] == 'suspect' for x in r['rows'] if x['model'] == m)} | "
                     f"{_wilson(sum(x['dft'] >= 0 for x in sus), len(sus))} |")
    lines += ["", "CHGNet vs DFT E_hull (eV/atom), every crystal audited "
              "(scatter: [docs/dft_audit_scatter.png](dft_audit_scatter.png)):", "",
              "| model | kind | crystal | atoms | CHGNet | DFT | verdict | decomposition | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['model']} | {x['kind']} | {x['formula']} | {x['n_atoms']} | {_f(x['chgnet'])} | "
                     f"{_f(x['dft'])} | {x['verdict']} | {x['decomposition']} | {x['note']} |")
    return "\n".join(lines)


def audit_counts(r: dict, model: str) -> dict[str, int]:
    """S.U.N. crystals of ``model`` audited, judged (confirmed or refuted) and confirmed; suspect ones judged, and
    those DFT does not put below the phases."""
    sun = [x for x in r["rows"] if x["model"] == model and x["kind"] == "sun"]
    sus = [x for x in r["rows"] if x["model"] == model and x["kind"] == "suspect" and x["dft"] is not None
           and math.isfinite(x["dft"])]
    return {"sun_audited": len(sun), "sun_judged": sum(x["verdict"] in ("confirmed", "refuted") for x in sun),
            "sun_confirmed": sum(x["verdict"] == "confirmed" for x in sun),
            "suspect_judged": len(sus), "suspect_dft_not_below": sum(x["dft"] >= 0 for x in sus)}


def write_cards(r: dict) -> None:
    """Put the audit beside each generator card's S.U.N. numbers (its metrics and the command that made them)."""
    from battgai.core import registry

    for model in r["models"]:
        card = registry.load_card(model)
        seen = r.get("seen", {}).get(model, {})
        counts = {f"bench_dft_audit_{k}": v for k, v in {**audit_counts(r, model), "sun_in_limits": seen.get("sun"),
                                                         "sun_lanthanide_left_out": seen.get("sun_skipped")}.items()
                  if v is not None}
        registry.write_card(dataclasses.replace(card, metrics={**card.metrics, **counts}, metrics_command=(
            card.metrics_command.split("; DFT audit:")[0] + "; DFT audit: python -m battgai bench dft --part audit "
            f"--audit-k {r['k']} --audit-sample {r['n_sample']} --audit-max-atoms {r['max_atoms']} "
            f"--audit-max-ref-atoms {r['max_ref_atoms']} --max-seconds {r['max_seconds']:.0f}"
            f"{' --audit-skip-lanthanides' if r.get('skip_lanthanides') else ''} (bench_dft_audit_*)")))


def audit_scatter(r: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for m, marker, color in zip(r["models"], "os", ("C0", "C1"), strict=False):
        for kind in ("sun", "suspect"):
            pts = [(x["chgnet"], x["dft"]) for x in r["rows"] if x["model"] == m and x["kind"] == kind
                   and x["dft"] is not None and math.isfinite(x["dft"])]
            if pts:  # suspect ones hollow
                ax.scatter(*zip(*pts, strict=True), marker=marker, label=f"{m} {kind}", edgecolors=color,
                           facecolors="none" if kind == "suspect" else color)
    ax.axline((0, 0), slope=1, color="grey", lw=0.8)
    ax.axhline(0.1, color="red", lw=0.6, ls="--")
    ax.set(xlabel="CHGNet E_hull (eV/atom)", ylabel="DFT E_hull (eV/atom)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(SCATTER, dpi=120)


def _cost_cells() -> dict:
    from pymatgen.core import Lattice, Structure

    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return {
        "Al fcc": Structure(Lattice.cubic(4.04), ["Al"] * 4, fcc),
        "Si diamond": Structure(Lattice.cubic(5.47), ["Si"] * 8,
                                fcc + [[x + 0.25, y + 0.25, z + 0.25] for x, y, z in fcc]),
        "NaCl rocksalt": Structure(Lattice.cubic(5.69), ["Na"] * 4 + ["Cl"] * 4,
                                   fcc + [[x + 0.5, y, z] for x, y, z in fcc]),
        "LiAl3 L1_2": Structure(Lattice.cubic(4.03), ["Li", "Al", "Al", "Al"], fcc),
        "TiO2 rutile": Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.65, 2.97), ["Ti", "O"],
                                                 [[0, 0, 0], [0.305, 0.305, 0]]),
    }


def cost(workers: tuple[int, ...] = (1, 2)) -> dict:
    """Seconds per calculation by atom count (screen; accurate on the two smallest) and the same batch of
    calculations on 1 and 2 Ray workers."""
    from battgai.materials.dft.calculator import compute, primitive
    from battgai.materials.dft.settings import PRESETS
    from battgai.materials.dft.verify import _run_all

    cells = {k: primitive(s) for k, s in _cost_cells().items()}
    rows = []
    for name, preset in PRESETS.items():
        for label, s in cells.items():
            if preset.relax and len(s) > 2:
                continue  # a relaxation costs a single point per step: the two smallest cells show it
            t = time.time()
            e, _ = compute(s, preset)
            rows.append({"preset": name, "cell": label, "atoms": e.n_atoms, "seconds": round(time.time() - t, 1),
                         "scf_iterations": e.scf_iterations})
    batch = {}
    for w in workers:
        t = time.time()
        _run_all(cells, PRESETS["screen"], w, None, {k: k for k in cells}, lambda key, result: None, None)
        batch[w] = round(time.time() - t, 1)
    return {"rows": rows, "batch": batch, "batch_cells": list(cells)}


def measured_cost() -> dict:
    """Seconds per calculation of every reference energy in the store (the accuracy and audit runs' real crystals),
    by atom count and spin."""
    from battgai.materials.dft.settings import PRESETS
    from battgai.materials.dft.store import DFTStore

    energies = list(DFTStore(PRESETS["screen"], bundled=None).all().values())
    groups: dict[tuple[int, bool], list[float]] = {}
    for e in energies:
        groups.setdefault((e.n_atoms, e.spin_polarised), []).append(e.seconds)
    acc_path = ARTIFACTS / "accuracy.json"
    acc = json.loads(acc_path.read_text()) if acc_path.exists() else None
    return {"groups": {f"{n}:{int(spin)}": v for (n, spin), v in sorted(groups.items())},
            "accuracy_wall_s": acc["wall_s"] if acc else math.nan}


def cost_markdown(r: dict) -> str:
    lines = ["### Cost (`python -m battgai bench dft --part cost`)", "",
             "One core per calculation (`OMP_NUM_THREADS=1`), this machine (2 cores). The accurate preset relaxes "
             "cell and positions with DFT, so it costs one single point per BFGS step.", "",
             "| preset | cell | atoms (primitive) | SCF iterations | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {x['preset']} | {x['cell']} | {x['atoms']} | {x['scf_iterations']} | {x['seconds']} |"
              for x in r["rows"]]
    b = {int(w): t for w, t in r["batch"].items()}
    lines += ["", f"The {len(r['batch_cells'])} screen calculations as one batch: "
              + ", ".join(f"{w} worker{'s on Ray' if w > 1 else ' (in process)'} {t} s" for w, t in b.items())
              + (f" (speed-up {b[1] / b[2]:.2f}x)" if 1 in b and 2 in b else "")
              + ": cells this small finish before a Ray worker has started and imported GPAW, so one in-process "
              "worker wins; the real crystals below show the scaling."]
    m = r.get("measured")
    if m:
        lines += ["", "Real crystals: every reference phase the benches computed (screen preset), seconds per "
                  "calculation by primitive-cell size (low-symmetry cells need many more k-points than the cubic "
                  "ones above):", "", "| atoms | spin | calculations | median s | max s |", "|---|---|---|---|---|"]
        for key, secs in m["groups"].items():
            n, spin = key.split(":")
            lines.append(f"| {n} | {'polarised' if spin == '1' else 'paired'} | {len(secs)} | "
                         f"{float(np.median(secs)):.0f} | {max(secs):.0f} |")
        lines += ["", "Two workers on real crystals were not timed apart from other work here; the accuracy part "
                  f"({m['accuracy_wall_s']:.0f} s of wall time on 2 Ray workers) shared the machine with development."]
    return "\n".join(lines)

def _save(name: str, result: dict) -> None:
    """Keep the part's numbers, and bundle the reference energies it computed so a fresh clone reuses them."""
    from battgai.materials.dft.settings import PRESETS
    from battgai.materials.dft.store import DFTStore, export_bundled

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    export_bundled(DFTStore(PRESETS["screen"]))


def main(argv: list[str] | None = None) -> None:
    from battgai.bench import write_subsection

    p = argparse.ArgumentParser(prog="python -m battgai bench dft")
    p.add_argument("--part", choices=("accuracy", "audit", "cost"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--intermetallics", type=int, default=12)
    p.add_argument("--oxides", type=int, default=6)
    p.add_argument("--magnetic", type=int, default=4)
    p.add_argument("--audit-k", type=int, default=8, help="CHGNet-S.U.N. crystals per model to audit")
    p.add_argument("--audit-sample", type=int, default=100, help="crystals sampled per model")
    p.add_argument("--audit-seed", type=int, default=11)
    p.add_argument("--audit-max-atoms", type=int, default=8, help="largest primitive cell audited")
    p.add_argument("--audit-max-ref-atoms", type=int, default=10, help="largest decomposition phase")
    p.add_argument("--max-seconds", type=float, default=None, help="time limit per calculation (default: preset's)")
    p.add_argument("--audit-skip-lanthanides", action="store_true",
                   help="leave out crystals with a lanthanide (their f-electron SCF is slow at screen settings); "
                        "how many were left out is reported")
    args = p.parse_args(argv)
    if args.part == "accuracy":
        r = accuracy({"intermetallic": args.intermetallics, "oxide/fluoride +U": args.oxides,
                      "magnetic": args.magnetic}, args.seed, args.workers)
        _save("accuracy", r)
        md = accuracy_markdown(r)
        write_subsection("dft", "dft-accuracy", md)
        print(md)
    elif args.part == "audit":
        r = audit(("materials_gpt", "materials_gpt_rl"), args.audit_k, args.audit_sample, args.audit_seed,
                  args.workers, args.audit_max_atoms, args.audit_max_ref_atoms, args.max_seconds,
                  args.audit_skip_lanthanides)
        _save("audit", r)
        audit_scatter(r)
        write_cards(r)
        md = audit_markdown(r)
        write_subsection("dft", "dft-audit", md)
        print(md)
    else:
        r = {**cost(), "measured": measured_cost()}
        _save("cost", r)
        md = cost_markdown(r)
        write_subsection("dft", "dft-cost", md)
        print(md)
