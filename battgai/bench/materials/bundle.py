"""``python -m battgai.bench bundle``: the bundled MP-20 index and references against the shared data.

On one seed's candidates of the app's sampler (unconstrained, guidance 2), it
judges novelty with the bundled index and with the shared CIFs, and E_hull with
the bundled CHGNet reference energies and with references computed from the
shared structures from scratch (a fresh energy cache, no bundle), then times
what a fresh clone does first: load each bundled file and answer one check.
Needs the shared data (``BATTGAI_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

from battgai.materials.checks import bundle


def _time(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def compare(n: int = 50, seed: int = 0) -> dict:
    """Novelty and E_hull of ``n`` candidates with the bundle and with the shared data (see module doc)."""
    from battgai.materials.checks.stability import EnergyCache, ReferencePhases, static_energies
    from battgai.materials.checks.validate import is_novel
    from battgai.materials.generation.sample import Conditions, load_model
    from battgai.materials.pipeline import generate
    from battgai.materials.training.corpus import training_cifs_by_formula

    bundle.load_known_phases.cache_clear()
    bundle.load_references.cache_clear()
    known, t_index = _time(bundle.load_known_phases)
    index = known.training()  # the shared path's novelty is the training split's
    refs_b, t_refs = _time(ReferencePhases.from_bundle)
    cands, _ = generate(load_model(), Conditions(), n, seed, guidance=2.0)
    structures = [c.structure for c in cands if c.valid_structure]
    _, t_first_novelty = _time(lambda: is_novel(structures[0], index))
    energies = static_energies(structures)
    _, t_first_hull = _time(lambda: refs_b.hull(structures[0].composition, energies[0]))
    shared = training_cifs_by_formula()
    novel_b = [is_novel(s, index) for s in structures]
    novel_s = [is_novel(s, shared) for s in structures]
    # What a training-split novelty counts as new that is a known phase all the same (held out, MPTS-52, ...).
    matches = [known.match(s) for s in structures]
    rediscovered = [m[1] for m, nov in zip(matches, novel_b, strict=True) if nov and m is not None]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = ReferencePhases.from_mp20()
        full.cache = EnergyCache(Path(tmp) / "fresh.json")  # computed here from the shared CIFs, no bundle
        t = time.perf_counter()
        hull_s = [full.hull(s.composition, e).e_above_hull for s, e in zip(structures, energies, strict=True)]
        t_shared = time.perf_counter() - t
        n_computed = len(full.cache.values)
    hull_b = [refs_b.hull(s.composition, e).e_above_hull for s, e in zip(structures, energies, strict=True)]
    both = [(a, b) for a, b in zip(hull_b, hull_s, strict=True) if not (math.isnan(a) and math.isnan(b))]
    m = bundle.describe()
    return {
        "candidates": len(structures), "seed": seed,
        "novel_bundle": sum(novel_b), "novel_shared": sum(novel_s),
        "novelty_disagreements": sum(a != b for a, b in zip(novel_b, novel_s, strict=True)),
        "new_vs_known": sum(m is None for m in matches), "known_phases": known.n_structures,
        "rediscovered_by_source": {src: rediscovered.count(src) for src in sorted(set(rediscovered))},
        "ehull_covered": sum(not math.isnan(a) for a in hull_b),
        "ehull_covered_shared": sum(not math.isnan(b) for b in hull_s),
        "ehull_nan_mismatch": sum(math.isnan(a) != math.isnan(b) for a, b in both),
        "ehull_max_abs_diff": max((abs(a - b) for a, b in both if not math.isnan(a + b)), default=0.0),
        "mb": {k: round(v["bytes"] / 1e6, 2) for k, v in m["files"].items()},
        "s_load_index": round(t_index, 2), "s_load_refs": round(t_refs, 2),
        "s_first_novelty": round(t_first_novelty, 3), "s_first_hull": round(t_first_hull, 3),
        "s_shared_references_from_scratch": round(t_shared, 1), "references_computed": n_computed,
    }


def markdown(r: dict) -> str:
    files = ", ".join(f"`{k}` {v} MB" for k, v in r["mb"].items())
    return "\n".join([
        "### Bundled known-phase index and references (`python -m battgai.bench bundle`)",
        "",
        f"{r['candidates']} valid candidates of the app's sampler (seed {r['seed']}, unconstrained, guidance 2), "
        "judged with the bundle and with the shared data (references computed from the shared CIFs from scratch "
        f"with CHGNet, same candidate energies). Files: {files}.",
        "",
        "| check | bundle | shared data |",
        "|---|---|---|",
        f"| novel vs the training split (generator benchmark) | {r['novel_bundle']} | {r['novel_shared']} "
        f"(disagreements: {r['novelty_disagreements']}) |",
        f"| new vs every known phase ({r['known_phases']:,}; the app's 'new') | {r['new_vs_known']} | the same "
        "index |",
        f"| E_hull computed (chemical system covered) | {r['ehull_covered']} | {r['ehull_covered_shared']} |",
        f"| max abs E_hull difference (eV/atom) | {r['ehull_max_abs_diff']:.2e} | |",
        f"| time to load / first check | index {r['s_load_index']} s + {r['s_first_novelty']} s, references "
        f"{r['s_load_refs']} s + {r['s_first_hull']} s | {r['references_computed']} reference energies computed "
        f"in {r['s_shared_references_from_scratch']} s |",
        "",
        f"Novel against the training split but a known phase all the same: "
        f"{sum(r['rediscovered_by_source'].values())} of {r['novel_bundle']} "
        f"({', '.join(f'{k}: {v}' for k, v in r['rediscovered_by_source'].items()) or 'none'}); these count as "
        "rediscoveries, never as new, on the page, in campaigns and in the reward.",
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m battgai.bench bundle")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md as it is")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    r = compare(args.n, args.seed)
    text = markdown(r)
    print(text)
    print(json.dumps(r))
    if not args.no_write:
        from battgai.bench import write_section

        write_section("bundle", text)
