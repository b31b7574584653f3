"""``python -m battgai.bench campaign``: Ray scaling and discovery yield of a campaign, side by side.

1. Relaxations per minute on a local Ray with 2 CHGNet workers against 1, on the same crystals
   (each worker loaded and warmed before the clock starts).
2. Discovery yield at equal CPU time: new (no training structure matches), unique, relaxed-stable
   and not suspect crystals per CPU-hour, for (a) a campaign (screen by static E_hull, relax the
   best), (b) the bundled generator with 'Novel only', relaxed in the order sampled, (c) pyxtal random
   structures with the generator's compositions and space groups (the materials bench's baseline),
   relaxed. The campaign runs first; each baseline then runs until it has used the same CPU seconds
   (its own process; the campaign's driver plus its Ray worker, measured with psutil).
3. ``--part reward``: the reward-fine-tuned generator (:mod:`battgai.materials.discovery.finetune`) against
   its parent, the same number of samples on the same seed with the app's sampler: novelty,
   uniqueness, static S.U.N. over all, relaxed S.U.N. over the first ``--relax-n``, the suspect
   share, COV-R / COV-P against every held-out MP-20 crystal and the density / element-count
   Wasserstein distances (the materials bench's protocol).

Each part writes its own block of the section, so one can be rerun alone.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from battgai.bench.materials import rounds_within
from battgai.bench.materials.battery import FoundCounter, relax_or_none
from battgai.materials.checks import validate


def ray_scaling(n: int, steps: int, seed: int) -> dict:
    """Relaxations per minute with 1 and 2 workers on the same ``n`` generated crystals (``steps`` FIRE steps)."""
    import ray

    from battgai.core import engine
    from battgai.materials.discovery.engine import Engine
    from battgai.materials.generation.sample import Conditions, load_model
    from battgai.materials.pipeline import generate

    cands, _ = generate(load_model(), Conditions(), n, seed=seed, batch_size=n)
    structures = [c.structure for c in cands]
    started = engine.connect(num_cpus=2)
    out = {"n": len(structures), "steps": steps, "load_before": os.getloadavg()[0]}
    try:
        for workers in (1, 2):
            eng = Engine(workers)
            eng.relax(structures[:workers], steps=2, fmax=1e-6)  # load and warm every worker first
            t0 = time.time()
            eng.relax(structures, steps=steps, fmax=1e-6)  # fmax this low: every crystal takes `steps` steps
            out[f"per_minute_{workers}"] = 60 * len(structures) / (time.time() - t0)
            eng.close()
    finally:
        if started:
            ray.shutdown()
    out["speedup"] = out["per_minute_2"] / out["per_minute_1"]
    out["load_after"] = os.getloadavg()[0]
    return out


def campaign_yield(budget: float, per_round: int, relax: int, steps: int, seed: int,
                   model: str = "materials_gpt") -> dict:
    """Rounds of a campaign sampling ``model`` on one Ray worker until ``budget`` CPU seconds are used."""

    from battgai.materials.discovery import campaign

    settings = campaign.CampaignSettings(rounds=10**6, per_round=per_round, relax=relax, relax_steps=steps,
                                         seed=seed, model=model)
    records, cpu = rounds_within(settings, budget)
    rounds = [campaign.summary(rec) for rec in records]
    return {"cpu_s": cpu, "rounds": len(rounds), "sampled": sum(r["sampled"] for r in rounds),
            "relaxed": sum(r["relaxed"] for r in rounds), "found": sum(r["sun"] for r in rounds),
            "suspect": sum(r["suspect"] for r in rounds)}


def baseline_yield(name: str, budget: float, steps: int, seed: int, refs, known, chunk: int = 10) -> dict:
    """Sample (``name``: "novel_only" or "pyxtal") and relax in order until ``budget`` CPU seconds are used."""
    from battgai.bench.materials import pyxtal_random
    from battgai.materials.discovery.objective import BatteryTarget
    from battgai.materials.generation.sample import Conditions, load_model
    from battgai.materials.pipeline import generate

    # No working ion: found = new, unique, relaxed-stable and not suspect (S.U.N.).
    lm, count, c0, k = load_model(), FoundCounter(BatteryTarget(), refs, known), time.process_time(), 0
    sampled = 0
    while time.process_time() - c0 < budget:
        cands, _ = generate(lm, Conditions(), chunk, seed=seed + 7919 * k, batch_size=chunk, known=known,
                            guidance=2.0, novel_only=name == "novel_only")
        structures = [c.structure for c in cands]
        if name == "pyxtal":
            structures = pyxtal_random(structures, [c.spacegroup_asked for c in cands], seed + k).structures
        for s in structures:
            if time.process_time() - c0 >= budget:
                break
            sampled += 1
            if s is None or not validate.structural_valid(s):
                continue
            count.add(*relax_or_none(s, steps))
        k += 1
    return {"cpu_s": time.process_time() - c0, "sampled": sampled, "relaxed": count.relaxed, "found": count.found,
            "suspect": count.suspect}


#: Block names of the parts inside the "campaign" section of docs/BENCHMARKS.md.
ENGINE_BLOCK, REWARD_BLOCK, BATTERY_BLOCK = "campaign-engine", "campaign-reward", "campaign-battery"
#: (key, label, target, higher is better) of the reward table; None = reported without a target.
REWARD_ROWS = (("novel", "new (vs every known phase)", 0.85, True), ("unique", "uniqueness", 0.95, True),
               ("sun_static", "S.U.N., static CHGNet, all samples", 0.45, True),
               ("sun_relaxed", "S.U.N., relaxed, first N", 0.60, True),
               ("stable_static", "stable, static", None, True), ("suspect_static", "suspect, static", None, False),
               ("suspect_relaxed", "suspect, relaxed, first N", None, False),
               ("cov_r", "COV-R", 0.95, True), ("cov_p", "COV-P", 0.97, True),
               ("wdist_density", "Wasserstein, density", 0.3, False),
               ("wdist_num_elems", "Wasserstein, number of elements", None, False),
               ("acceptance", "acceptance of the page's rejection", None, True))


def heldout_test_rows():
    """Every held-out MP-20 test crystal (``corpus.is_heldout``), read from the data without tokenizing the
    corpus; the materials bench's references are the 2,995 of these 2,998 that tokenize."""
    from battgai.materials.training.corpus import is_heldout, mp20_frame

    df = mp20_frame()
    return df[(df.mp20_split == "test") & df.material_id.map(is_heldout)].sort_values("material_id")


def tuned_conditions(model: str):
    """The conditions and guidance a fine-tuned model was tuned under (its card's ``tuned_for``), else none."""
    from battgai.core.registry import load_card
    from battgai.materials.discovery.campaign import CampaignSettings
    from battgai.materials.generation.sample import Conditions

    t = load_card(model).tuned_for
    if not t:
        return Conditions(), 1.0
    return (CampaignSettings(conditions=t["conditions"], v_min=t["v_min"], v_max=t["v_max"]).sampling_conditions(),
            float(t["guidance"]))


def same_chemistry(held, conditions):
    """Held-out rows whose elements obey ``conditions``' allowed and required elements (the ion required)."""
    from pymatgen.core import Composition

    allowed = set(conditions.allowed_elements)
    required = {*conditions.required_elements, *([conditions.working_ion] if conditions.working_ion else [])}

    def ok(formula: str) -> bool:
        els = {e.symbol for e in Composition(formula).elements}
        return required <= els and (not allowed or els <= allowed)

    return held[held.formula.map(ok)]


def reward_comparison(models: tuple[str, ...], n: int, relax_n: int, relax_steps: int, seed: int, refs,
                      known) -> dict:
    """Each of ``models`` through the app's sampler, ``n`` samples on ``seed``, scored as the materials bench
    scores a sampler (:func:`battgai.bench.materials.sampler_quality`). A fine-tuned model with conditions
    (its card's ``tuned_for``) is compared with its parent under those conditions and guidance, against
    the held-out crystals of the same chemistry."""
    from battgai.bench.materials import crystal_properties, heldout_fingerprints, sampler_quality
    from battgai.materials.generation.sample import load_model
    from battgai.materials.pipeline import generate

    conditions, guidance = tuned_conditions(models[-1])
    held = same_chemistry(heldout_test_rows(), conditions)
    ref_fp = heldout_fingerprints(list(held.material_id), list(held.cif))
    ref_props = crystal_properties([validate._parse_cif(c) for c in held.cif])
    out = {"n": n, "relax_n": relax_n, "relax_steps": relax_steps, "seed": seed, "ref": len(ref_fp[0]),
           "ref_density_mean": float(np.nanmean(ref_props[:, 0])), "models": {},
           "conditions": {k: v for k, v in conditions.as_dict().items() if v not in (None, ())},
           "guidance": guidance}
    for name in models:
        lm = load_model(name)
        t0 = time.time()
        cands, tally = generate(lm, conditions, n, seed, known=None, guidance=guidance)
        seconds = time.time() - t0
        structures = [c.structure for c in cands]
        m = sampler_quality(structures, ref_fp, ref_props, known, refs, relax_n, relax_steps)
        out["models"][name] = {**m, "sha256": lm.sha256, "sample_seconds": seconds,
                               "density_mean": float(np.nanmean(crystal_properties(structures)[:, 0])),
                               "acceptance": tally.accepted / max(tally.sampled, 1)}
        print(name, out["models"][name], flush=True)
    return out


def record_reward_in_card(r: dict) -> None:
    """Copy the fine-tuned model's side-by-side numbers (the last of the models) into its card."""
    from battgai.core import registry

    names = list(r["models"])
    tuned, parent = r["models"][names[-1]], r["models"][names[0]]
    card = registry.load_card(names[-1])
    if card.sha256 != tuned["sha256"]:
        return  # the weights changed since this run; its numbers do not describe them
    n, k = r["n"], r["relax_n"]
    card.metrics = {key: v for key, v in card.metrics.items()
                    if not key.startswith("bench_") or key.startswith("bench_dft_")}
    card.metrics.update({
        "bench_new_vs_known": round(tuned["novel"], 3), "bench_uniqueness": round(tuned["unique"], 3),
        f"bench_sun_chgnet_static_{n}": round(tuned["sun_static"], 3),
        f"bench_sun_chgnet_relaxed_{k}": round(tuned["sun_relaxed"], 3),
        f"bench_parent_sun_chgnet_static_{n}": round(parent["sun_static"], 3),
        f"bench_parent_sun_chgnet_relaxed_{k}": round(parent["sun_relaxed"], 3),
        "bench_suspect_static": round(tuned["suspect_static"], 3),
        f"bench_cov_r_{n}": round(tuned["cov_r"], 3), f"bench_cov_p_{n}": round(tuned["cov_p"], 3),
        "bench_wdist_density": round(tuned["wdist_density"], 3),
        "bench_acceptance_with_rejection": round(tuned["acceptance"], 3)})
    registry.write_card(card)


def reward_markdown(r: dict) -> str:
    """The side-by-side table of the reward part, each target marked met / missed."""
    names = list(r["models"])
    head = "| metric | " + " | ".join(f"`{m}`" for m in names) + " | target (fine-tuned) |"
    lines = ["### Reward fine-tuning: fine-tuned generator vs its parent", "",
             f"Command: `{r['command']}` ({r['date']}, battgai {r['version']}). The app's sampler (rejection of "
             f"invalid, overlapping and non-neutral crystals), {r['n']:,} samples per model on seed {r['seed']}; "
             f"static CHGNet over all samples, relaxation ({r['relax_steps']} FIRE steps) of the first "
             f"{r['relax_n']}; novelty against every known phase on hand (MP-20 all splits, MPTS-52, insertion "
             f"electrodes); COV against the {r['ref']:,} held-out MP-20 test crystals of the same chemistry. "
             f"Conditions: {r.get('conditions') or 'none'}, guidance {r.get('guidance', 1.0):g}. Stable = E_hull "
             "< 0.1 eV/atom and not suspect (more than 0.05 eV/atom below the known hull: shown apart, never a "
             "win).", "", head, "|---" * (len(names) + 2) + "|"]
    tuned = r["models"][names[-1]]
    for key, label, target, higher in REWARD_ROWS:
        cells = [f"{100 * m[key]:.1f} %" if key not in ("wdist_density", "wdist_num_elems") else f"{m[key]:.3f}"
                 for m in r["models"].values()]
        if target is None:
            verdict = "–"
        else:
            met = tuned[key] >= target if higher else tuned[key] <= target
            shown = f"{100 * target:.0f} %" if key not in ("wdist_density",) else f"{target:g}"
            verdict = f"{'>=' if higher else '<='} {shown}: **{'met' if met else 'missed'}**"
        label = label.replace("first N", f"first {tuned['relax_n']}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    parent = r["models"][names[0]]
    for key, label in (("sun_static", "static"), ("sun_relaxed", "relaxed")):
        if parent[key] > 0:
            ratio = tuned[key] / parent[key]
            lines.append(f"| S.U.N. {label}, fine-tuned / parent | {ratio:.2f}x | | >= 1.5x: "
                         f"**{'met' if ratio >= 1.5 else 'missed'}** |")
    densities = ", ".join(f"`{k}` {m['density_mean']:.2f}" for k, m in r["models"].items())
    lines += ["", f"Mean density (g/cm^3): {densities}; held-out crystals {r['ref_density_mean']:.2f}."]
    if r.get("conditions"):
        lines += ["", "Under conditions the S.U.N. target is the ratio to the parent (>= 1.5x); the absolute S.U.N. "
                  "targets in the table are the unconditional generator's."]
    lines += ["", "COV at 10,000 samples (CDVAE's count, target >= 99 / 99 %) is not part of this run: CrystalNN "
              "fingerprints cost about 0.3 s per crystal on this machine, 50 CPU-minutes per model."]
    return "\n".join(lines)


def markdown(r: dict) -> str:
    s = r["scaling"]
    lines = [
        f"Command: `{r['command']}` ({r['date']}, battgai {r['version']}, 2 CPU cores shared with other work: "
        f"load average {s['load_before']:.1f} before, {s['load_after']:.1f} after the scaling part).", "",
        "### Ray: relaxations per minute, same crystals", "",
        "| workers | relaxations / min |", "|---|---|",
        f"| 1 | {s['per_minute_1']:.1f} |", f"| 2 | {s['per_minute_2']:.1f} |", "",
        f"{s['n']} generated crystals, {s['steps']} FIRE steps each (fmax set so low that every one takes all "
        f"steps), workers loaded before timing. Speed-up **{s['speedup']:.2f}x** (target >= 1.7x: "
        f"{'met' if s['speedup'] >= 1.7 else 'missed'}).", "",
        "### Discovery yield at equal CPU time", "",
        "New = matches no training structure; unique within the method's own run; relaxed-stable = CHGNet E_hull "
        "< 0.1 eV/atom after relaxation and not suspect (more than 0.05 eV/atom below the MP-20 hull).", "",
        "| method | CPU s | sampled | relaxed | found | suspect | found / CPU-hour |", "|---|---|---|---|---|---|---|",
    ]
    per_hour = {}
    tuned = r["yield"].get("campaign_tuned")
    for name, label in (("campaign", "campaign (static screen, relax best)"),
                        *([("campaign_tuned", f"campaign sampling `{tuned['model']}`")] if tuned else []),
                        ("novel_only", "bundled generator, 'Novel only', relax in order"),
                        ("pyxtal", "pyxtal random (same compositions / space groups) + relax")):
        y = r["yield"][name]
        per_hour[name] = y["found"] / (y["cpu_s"] / 3600)
        lines.append(f"| {label} | {y['cpu_s']:.0f} | {y['sampled']} | {y['relaxed']} | {y['found']} | "
                     f"{y['suspect']} | {per_hour[name]:.0f} |")
    ratios = []
    if tuned and per_hour["campaign"] > 0:
        ratios.append(f"sampling `{tuned['model']}` instead of the bundled model: "
                      f"{per_hour['campaign_tuned'] / per_hour['campaign']:.2f}x the campaign's yield")
    for name, target in (("novel_only", 3), ("pyxtal", 5)):
        if per_hour[name] > 0:
            ratio = per_hour["campaign"] / per_hour[name]
            ratios.append(f"{ratio:.1f}x the {name.replace('_', ' ')} baseline (target >= {target}x: "
                          f"{'met' if ratio >= target else 'missed'})")
        else:
            ratios.append(f"the {name.replace('_', ' ')} baseline found none, so no ratio (target >= {target}x)")
    y = r["yield"]["campaign"]
    lines += ["", f"Campaign: {y['rounds']} rounds of {r['per_round']} sampled, {r['relax']} relaxed "
              f"({r['steps']} FIRE steps) on one Ray worker; " + "; ".join(ratios) + ". Counts this small "
              "(one short run per method) carry wide intervals: read them as an order of magnitude. Each "
              "baseline's CPU seconds include its first sampling call with novelty checks (training structures "
              "built on first use of a formula), which a short budget does not amortise; the campaign loaded "
              "everything before its clock started, so short budgets favour it. The first campaign row samples "
              "the bundled generator; the ratios to the baselines are that row's."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import datetime as dt
    import sys

    from battgai import __version__
    from battgai.bench import write_subsection
    from battgai.materials.checks.references import known_phases, reference_phases

    p = argparse.ArgumentParser(prog="python -m battgai.bench campaign")
    p.add_argument("--budget", type=float, default=120, help="CPU seconds per method in the yield part")
    p.add_argument("--per-round", type=int, default=20)
    p.add_argument("--relax", type=int, default=4)
    p.add_argument("--steps", type=int, default=100, help="FIRE steps per relaxation")
    p.add_argument("--scaling-n", type=int, default=16,
                   help="crystals relaxed per worker count (with few, the run's tail has one worker idle)")
    p.add_argument("--scaling-steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=("engine", "reward", "battery"), default="engine",
                   help="engine: Ray scaling and discovery yield; reward: fine-tuned generator vs its parent; "
                        "battery: Li- and Na-ion campaigns vs 'Novel only' and substitution at equal CPU time")
    p.add_argument("--presets", default="li,na", help="battery part: which of li, na")
    p.add_argument("--tuned", default="materials_gpt_li_cathode",
                   help="battery part: a fine-tuned model also run as a campaign on the Li preset ('' : none)")
    p.add_argument("--campaign-model", default="",
                   help="engine part: also run the campaign sampling this registry model (e.g. materials_gpt_rl)")
    p.add_argument("--models", default="materials_gpt,materials_gpt_rl", help="reward part: parent,fine-tuned")
    p.add_argument("--n", type=int, default=1000, help="reward part: samples per model")
    p.add_argument("--relax-n", type=int, default=100, help="reward part: relaxed samples per model")
    p.add_argument("--no-write", action="store_true", help="print, do not write docs/BENCHMARKS.md")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    r = {"command": "python -m battgai.bench campaign " + " ".join(argv if argv is not None else sys.argv[2:]),
         "date": dt.date.today().isoformat(), "version": __version__, "per_round": args.per_round,
         "relax": args.relax, "steps": args.steps}
    refs, _ = reference_phases()
    known, _ = known_phases()
    if args.part == "battery":
        from battgai.bench.materials import battery

        r["results"] = battery.run(args.presets.split(","), args.budget, args.per_round, args.relax, args.steps,
                                   args.seed, args.tuned, refs, known)
        text = battery.markdown(r)
        print(text)
        if not args.no_write:
            write_subsection("campaign", BATTERY_BLOCK, text)
        return
    if args.part == "reward":
        r.update(reward_comparison(tuple(args.models.split(",")), args.n, args.relax_n, args.steps, args.seed,
                                   refs, known))
        text = reward_markdown(r)
        print(text)
        if not args.no_write:
            block = REWARD_BLOCK if r["models"].keys() == {"materials_gpt", "materials_gpt_rl"} else \
                f"{REWARD_BLOCK}-{list(r['models'])[-1]}"
            write_subsection("campaign", block, text)
            record_reward_in_card(r)
        return
    r["scaling"] = ray_scaling(args.scaling_n, args.scaling_steps, args.seed)
    print(r["scaling"], flush=True)
    r["yield"] = {"campaign": campaign_yield(args.budget, args.per_round, args.relax, args.steps, args.seed)}
    print(r["yield"], flush=True)
    budget = r["yield"]["campaign"]["cpu_s"]
    if args.campaign_model:
        r["yield"]["campaign_tuned"] = {**campaign_yield(budget, args.per_round, args.relax, args.steps, args.seed,
                                                         args.campaign_model), "model": args.campaign_model}
        print(r["yield"]["campaign_tuned"], flush=True)
    for name in ("novel_only", "pyxtal"):
        r["yield"][name] = baseline_yield(name, budget, args.steps, args.seed, refs, known)
        print(name, r["yield"][name], flush=True)
    text = markdown(r)
    print(text)
    if not args.no_write:
        write_subsection("campaign", ENGINE_BLOCK, text)
