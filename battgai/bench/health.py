"""``python -m battgai.bench health``: the augmentation experiment, quality scores and speed.

Two cohorts of NASA cells, each with the full report: the four 24 C / 2 A cells (the setting of
the bar in DESIGN.md) and every cell whose 3.9 -> 3.5 V window is observed (other temperatures
and currents: transfer across conditions). Prints markdown and writes it into
docs/BENCHMARKS.md (health section). ``--part generators`` (cVAE vs diffusion vs jitter, the
default pick), ``--part transfer``, ``--part band`` (the transfer's uncertainty band per NASA group) and
``--part loco`` (full-data leave-one-cell-out, per cell) rerun one block alone, between its own markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np

from battgai.bench import block_markers

CLASSIC = ("B0005", "B0006", "B0007", "B0018")


def _fmt(mean_std: tuple[float, float]) -> str:
    return f"{mean_std[0]:.2f} +- {mean_std[1]:.2f}"


def _hit(ok: bool) -> str:
    return "hit" if ok else "**missed**"


def _arm_table(res) -> list[str]:
    """Mean +- std RMSE per arm; change of mean RMSE vs real only, and the mean of per-run paired changes."""
    out = ["| estimator | real only | + jitter | + mixup | + cVAE | cVAE vs real: means (paired) | jitter | mixup |",
           "|---|---|---|---|---|---|---|---|"]
    for est in res.rmse:
        s = res.summary(est)
        out.append(
            f"| {est} | {_fmt(s['real only'])} | {_fmt(s['+ jitter'])} | {_fmt(s['+ mixup'])} | {_fmt(s['+ cVAE'])} | "
            f"{res.change_of_means(est, '+ cVAE'):+.1%} ({res.relative_change(est, '+ cVAE'):+.1%}) | "
            f"{res.change_of_means(est, '+ jitter'):+.1%} | {res.change_of_means(est, '+ mixup'):+.1%} |"
        )
    return out


def cohort_report(title: str, curves, cohort, n_splits: int, seeds: int, steps: int,
                  sensitivity: bool = False, quality_steps: int = 1500) -> tuple[list[str], dict]:
    """Markdown for one cohort, and the numbers the targets table needs."""
    from battgai.health.estimation import experiment
    from battgai.health.estimation.estimator import rmse_points
    from battgai.health.generation.cvae_train import TrainConfig

    cells = sorted(np.unique(cohort.cell_id))
    lines = [f"### {title}", "", f"{len(cohort)} curves of {len(cells)} cells: {', '.join(cells)}.", ""]

    print(f"[{title}] full-data leave-one-cell-out...", flush=True)
    loco = experiment.loco(cohort, ("ridge", "gbm", "mlp"))
    coulomb = rmse_points(cohort.soh, cohort.q[:, -1] / cohort.nominal_ah)
    lines += ["Full data, leave-one-cell-out, real curves only (RMSE in SOH points):", "",
              "| estimator | pooled over curves | mean of per-cell | worst cell |", "|---|---|---|---|"]
    for kind, r in loco.items():
        worst = max(r.per_cell, key=r.per_cell.get)
        lines.append(f"| {kind} | {r.pooled_rmse:.2f} | {r.mean_rmse:.2f} | {worst} ({r.per_cell[worst]:.1f}) |")
    lines += [f"| coulomb counting on the whole curve (sanity reference, not an estimator) | {coulomb:.2f} | | |",
              ""]

    print(f"[{title}] low-data experiments...", flush=True)
    aug = experiment.augmentation_experiment(cohort, n_train_cells=2, n_splits=n_splits,
                                             seeds=tuple(range(seeds)), estimators=("ridge", "gbm"), steps=steps)
    lines += [
        f"Low data (a), 2 cells: train on 2 cells, test on the other {len(cells) - 2}; {len(aug.splits)} pairs x "
        f"{len(aug.seeds)} seeds = {len(aug.splits) * len(aug.seeds)} runs; pairs: "
        + "; ".join("+".join(s) for s in aug.splits) + ".", "", *_arm_table(aug), "",
    ]
    early = experiment.early_life_experiment(cohort, frac=0.3, soh_min=0.6, seeds=tuple(range(seeds)),
                                             estimators=("ridge", "gbm"), steps=steps)
    lines += [
        "Low data (b), early life: leave one cell out; train on the first 30 % of the cycles of every other cell, "
        f"test on the held-out cell's whole life; {len(early.splits)} cells x {len(early.seeds)} seeds. The CVAE "
        "(trained on the same early-life curves) is asked for SOH uniform from 0.6 to the training maximum: 0.6 "
        "comes from the NASA protocol (tests end at 20-30 % fade), not from test labels.", "",
        *_arm_table(early), "",
    ]
    if sensitivity:
        rows = []
        for soh_min in (0.5, 0.7):
            e = experiment.early_life_experiment(cohort, frac=0.3, soh_min=soh_min, seeds=tuple(range(seeds)),
                                                 estimators=("ridge", "gbm"), steps=steps)
            rows += [f"| {soh_min} | {est} | {_fmt(e.summary(est)['real only'])} | {_fmt(e.summary(est)['+ cVAE'])} | "
                     f"{e.change_of_means(est, '+ cVAE'):+.1%} |" for est in ("ridge", "gbm")]
        lines += ["Sensitivity of (b) to the lowest synthetic SOH:", "",
                  "| lowest synthetic SOH | estimator | real only | + cVAE | change of means |",
                  "|---|---|---|---|---|", *rows, ""]

    print(f"[{title}] generator quality...", flush=True)
    q = experiment.generator_quality(curves, cohort, TrainConfig(steps=quality_steps))
    lines += [
        "Synthetic-data quality, leave-one-cell-out (generator retrained on all other NASA cells each time):", "",
        "| score | value |", "|---|---|",
        f"| TSTR: ridge trained on synthetic only, RMSE on the held-out real cell | {q.tstr_rmse:.2f} |",
        f"| TRTR: ridge trained on real, same folds | {q.trtr_rmse:.2f} |",
        f"| TSTR / TRTR | {q.tstr_ratio:.2f} |",
        f"| full data, real + synthetic (ridge) | {q.full_aug_rmse:.2f} |",
        f"| discriminative score, whole curve (latent bank sampling) | {q.discriminative_score:.3f} |",
        f"| discriminative score, 3.9 -> 3.5 V window (latent bank sampling) | {q.discriminative_score_window:.3f} |",
        f"| discriminative score, loaded part only (below {cohort.v_start.min():.3f} V) | "
        f"{q.discriminative_score_loaded:.3f} |",
        f"| discriminative score, whole curve, N(0, I) prior sampling | {q.discriminative_score_prior:.3f} |",
        "",
    ]
    numbers = {
        "a": aug, "b": early,
        "best_full": min(r.pooled_rmse for r in loco.values()),
        "disc": q.discriminative_score, "tstr": q.tstr_ratio,
    }
    return lines, numbers


def trajectory_report(n_splits: int, seeds: int) -> list[str]:
    """Synthetic per-cycle feature trajectories used the same way, for two labs, plus MIT -> HUST transfer."""
    from battgai.health.generation.trajectory import feature_experiment, load_features

    print("[features] low-data and transfer...", flush=True)
    mit, hust, xjtu = load_features("mit", every=10), load_features("hust", every=20), load_features("xjtu", every=5)
    lines = [
        "### Per-cycle feature datasets: synthetic feature / capacity trajectories", "",
        "16 charging-curve features per cycle (PINN4SOH set), SOH = capacity / nominal; ridge (alpha 1) on robustly "
        "standardised features. Low data: 2 training cells, the rest held out, generator (feature CVAE conditioned on "
        "SOH, 800 steps) retrained on the 2 cells; synthetic cells follow a training cell's SOH path with its fade "
        "scaled by U(0.8, 1.25) and one latent point per cell. Rows subsampled (MIT every 10th cycle, HUST 20th, "
        "XJTU 5th).", "",
        "| lab (cells, rows) | real only | + jitter | + mixup | + cVAE trajectories |", "|---|---|---|---|---|",
    ]
    transfer = None
    for fs, other in ((xjtu, None), (mit, hust)):
        r = feature_experiment(fs, n_splits=n_splits, seeds=tuple(range(seeds)), other=other)
        s = r.summary()
        lines.append(f"| {fs.lab} ({len(np.unique(fs.cell_id))}, {len(fs)}) | " +
                     " | ".join(_fmt(s[a]) for a in ("real only", "+ jitter", "+ mixup", "+ cVAE")) + " |")
        transfer = r if other is not None else transfer
    lines += ["", f"Transfer across labs (same A123 LFP cell, different lab): ridge trained on every {transfer.lab} "
              f"cell, tested on every {transfer.transfer_lab} cell: real only {transfer.transfer['real only']:.2f}, "
              f"real + synthetic {transfer.lab} trajectories {transfer.transfer['+ cVAE']:.2f} SOH points RMSE.", ""]
    return lines


def _target_cells(n: dict) -> list[tuple[str, bool]]:
    """(measured, hit) for each target row, for one cohort's numbers."""
    out = []
    for regime in ("a", "b"):
        for est in ("ridge", "gbm"):
            res = n[regime]
            mean = {arm: v[0] for arm, v in res.summary(est).items()}
            cut = res.change_of_means(est, "+ cVAE")
            out.append((f"{cut:+.1%}", cut <= -0.2))
            out.append((f"{mean['+ cVAE']:.2f} vs {mean['+ jitter']:.2f} / {mean['+ mixup']:.2f}",
                        mean["+ cVAE"] < min(mean["+ jitter"], mean["+ mixup"])))
    out.append((f"{n['best_full']:.2f}", n["best_full"] <= 1.5))
    out.append((f"{n['disc']:.3f}", n["disc"] <= 0.1))
    out.append((f"{n['tstr']:.2f}x", n["tstr"] <= 1.3))
    return out


def targets_table(a: dict, b: dict) -> list[str]:
    """Issue 6 targets, hit or missed, for the two cohorts' numbers (from :func:`cohort_report`)."""
    names = [f"({r}) {label}, {est}: {what}" for r, label in (("a", "2 cells"), ("b", "early life"))
             for est in ("ridge", "gbm")
             for what in ("cVAE cuts mean RMSE >= 20 %", "cVAE beats jitter and mixup (mean RMSE)")]
    names += ["full-data held-out RMSE <= 1.5 (best estimator, pooled)", "discriminative score <= 0.1 (whole curve)",
              "TSTR within 1.3x TRTR"]
    lines = ["### Targets (issue 6)", "",
             "| target | 24 C / 2 A cells | | all window-observed cells | |", "|---|---|---|---|---|"]
    for name, (va, ha), (vb, hb) in zip(names, _target_cells(a), _target_cells(b), strict=True):
        lines.append(f"| {name} | {va} | {_hit(ha)} | {vb} | {_hit(hb)} |")
    return [*lines, ""]


TRANSFER_START, TRANSFER_END = block_markers("health-transfer")


def transfer_section(generator_steps: int = 400) -> list[str]:
    """Leave-group-out transfer on NASA (two windows) and on the feature sets, each with the picked pipeline's row
    and its target (issue 33 item 1), and issue 24's targets, between its own markers."""
    from battgai.bench import health_transfer as transferbench
    from battgai.core.data import DataNotFound
    from battgai.health.preprocess import nasa_curves

    t0 = time.time()
    print("[transfer] leave-group-out...", flush=True)
    lines, numbers = transferbench.report(nasa_curves(), generator_steps, ((0.05, 0.4), (0.05, 0.6)))
    try:
        lines += transferbench.feature_report()
    except DataNotFound as exc:
        lines += [f"Feature sets not measured: {exc}", ""]
    lines += ["### Targets (issue 24)", "", *transferbench.targets(numbers),
              f"Transfer part: `python -m battgai.bench health --part transfer`, {dt.date.today().isoformat()}, "
              f"{time.time() - t0:.0f} s."]
    return [TRANSFER_START, *lines, TRANSFER_END]


BAND_START, BAND_END = block_markers("health-band")


def band_section() -> list[str]:
    """Issue 33 item 3: the transfer's band, coverage and mean half-width per NASA group, two windows."""
    from battgai.bench import health_transfer as transferbench
    from battgai.health.preprocess import nasa_curves

    t0 = time.time()
    print("[band] leave-group-out...", flush=True)
    lines = transferbench.band_report(nasa_curves(), ((0.05, 0.4), (0.05, 0.6)))
    lines += [f"Band part: `python -m battgai.bench health --part band`, {dt.date.today().isoformat()}, "
              f"{time.time() - t0:.0f} s."]
    return [BAND_START, *lines, BAND_END]


LOCO_START, LOCO_END = block_markers("health-loco")
LOCO_KINDS = ("ridge", "gbm", "mlp", "ridge_ic")


def loco_section() -> list[str]:
    """Issue 24: full-data leave-one-cell-out per estimator and per held-out cell (RMSE and bias), two cohorts."""
    from battgai.health.estimation import experiment
    from battgai.health.preprocess import nasa_curves, window_observed

    t0 = time.time()
    curves = nasa_curves()
    cohorts = {"24 C / 2 A cells (3 training cells each fold)": curves.subset(np.isin(curves.cell_id, CLASSIC)),
               "window-observed cells (9 training cells each fold)": curves.subset(window_observed(curves))}
    lines = ["### Full-data leave-one-cell-out, per held-out cell", "",
             "Each cell in turn is held out; the estimator is trained on the cohort's other cells (real curves, "
             "3.9 -> 3.5 V window). ridge / gbm: window charge and its four 100 mV parts (the previous estimators); "
             "mlp: the raw window (health_soh_mlp's recipe); ridge_ic: window charge + log dQ/dV at 6 voltages "
             "inside the window, penalty picked by leave-one-cell-out over the training cells only "
             "(health_soh_ridge_ic, the page's estimator). Table cells: RMSE (bias, prediction minus label) in SOH "
             "points. The 24 C / 2 A errors are mostly one offset per cell: B0006 delivers about 0.05 x nominal "
             "less charge inside the window than the other three at the same SOH (its curve sits lower in "
             "voltage), and three training cells at one condition show no such shift to learn from.", ""]
    numbers = {}
    for title, cohort in cohorts.items():
        print(f"[loco] {title}...", flush=True)
        res = experiment.loco(cohort, LOCO_KINDS)
        cells = sorted(res["ridge"].per_cell)
        lines += [f"{title}: {len(cohort)} curves.", "",
                  "| estimator | pooled | mean of per-cell | " + " | ".join(cells) + " |",
                  "|---|---|---|" + "---|" * len(cells)]
        for kind, r in res.items():
            lines.append(f"| {kind} | {r.pooled_rmse:.2f} | {r.mean_rmse:.2f} | "
                         + " | ".join(f"{r.per_cell[c]:.1f} ({r.per_cell_bias[c]:+.1f})" for c in cells) + " |")
        lines.append("")
        numbers[title] = {k: r.pooled_rmse for k, r in res.items()}
        if len(cells) > len(CLASSIC):
            n = {c: int(np.sum(cohort.cell_id == c)) for c in CLASSIC}
            numbers["24 C / 2 A cells scored by the 9-training-cell folds"] = {
                k: float(np.sqrt(sum(r.per_cell[c] ** 2 * n[c] for c in CLASSIC) / sum(n.values())))
                for k, r in res.items()}
    lines += ["| target (issue 24) | previous best | ridge_ic | |", "|---|---|---|---|"]
    for title, n in numbers.items():
        prev = min(n[k] for k in ("ridge", "gbm", "mlp"))
        lines.append(f"| full-data leave-one-cell-out <= 2.0, {title} | {prev:.2f} | {n['ridge_ic']:.2f} | "
                     f"{_hit(n['ridge_ic'] <= 2.0)} |")
    lines += ["", "Leave-one-cell-out part: `python -m battgai.bench health --part loco`, "
              f"{dt.date.today().isoformat()}, {time.time() - t0:.0f} s."]
    return [LOCO_START, *lines, LOCO_END]


GENERATORS_START, GENERATORS_END = block_markers("health-generators")


def generators_section(write_cards: bool = True) -> list[str]:
    """Issue 24: cVAE and diffusion side by side against the jitter baseline, and the default pick.

    Quality scores leave-one-cell-out over the window-observed cells (each generator retrained
    without the held-out cell), the early-life augmentation with both generators, generation
    speed; with ``write_cards`` the scores go into both model cards, where the page's default
    rule (:func:`battgai.health.generation.generators.pick`) reads them.
    """
    import dataclasses

    from battgai.core import registry
    from battgai.health.estimation import experiment
    from battgai.health.generation import generators
    from battgai.health.preprocess import nasa_curves, window_observed

    t0 = time.time()
    curves = nasa_curves()
    wide = curves.subset(window_observed(curves))
    kinds = ("jitter", *generators.KINDS)
    names = {"jitter": "nearest real curve + 1 % noise (baseline)", "cvae": "cVAE (health_cvae)",
             "diffusion": "diffusion (health_diffusion)"}
    q = {}
    for kind in kinds:
        print(f"[generators] quality, {kind}...", flush=True)
        q[kind] = experiment.generator_quality(curves, wide, kind=kind)
    rows = [("discriminative score, whole curve (<= 0.1)", "discriminative_score", ".3f"),
            ("discriminative score, 3.9 -> 3.5 V window", "discriminative_score_window", ".3f"),
            (f"discriminative score, loaded part only (below {wide.v_start.min():.3f} V)",
             "discriminative_score_loaded_part", ".3f"),
            ("TSTR: ridge trained on synthetic only, RMSE (SOH points)", "tstr_rmse_soh_points", ".2f"),
            ("TRTR: ridge trained on real, same folds", "trtr_rmse_soh_points", ".2f"),
            ("TSTR / TRTR (<= 1.3)", "tstr_over_trtr", ".2f"),
            ("full data, real + synthetic (ridge)", "full_data_real_plus_synthetic_rmse", ".2f")]
    metrics = {k: q[k].metrics() for k in kinds}
    lines = ["### Curve generators side by side: cVAE, diffusion, jitter baseline", "",
             f"{len(wide)} curves of the {len(np.unique(wide.cell_id))} window-observed cells, leave-one-cell-out: "
             "each generator is retrained on every other NASA cell (all 15 minus the held-out one) and makes one "
             "curve at the conditions of every held-out curve (discriminative score: gradient boosting, 5-fold "
             "grouped by cell, on Q(V) / capacity over the whole 4.2 -> 2.7 V grid, i.e. the rest-to-load step, "
             "the loaded part and the end of discharge; 0 = indistinguishable, 0.5 = always told apart) and of "
             "every training curve (TSTR). The baseline copies the nearest training curve in (SOH, T, |I|), "
             "rescales it to the asked SOH and adds 1 % of nominal Gaussian noise.", "",
             "| score | " + " | ".join(names[k] for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(format(metrics[k][key], fmt) for k in kinds) + " |")
    lines.append("")

    print("[generators] early-life augmentation with both generators...", flush=True)
    early = experiment.early_life_experiment(wide, frac=0.3, soh_min=0.6, seeds=(0,), estimators=("ridge", "gbm"),
                                             steps=1000, diffusion=True)
    arms = list(early.rmse["ridge"])
    lines += ["Early-life augmentation (leave one cell out; train on the first 30 % of every other cell's cycles, "
              f"test on the held-out cell's whole life; {len(early.splits)} cells x 1 seed; synthetic SOH uniform "
              "from 0.6 to the training maximum), held-out RMSE in SOH points, mean +- std over cells:", "",
              "| estimator | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for est in early.rmse:
        summ = early.summary(est)
        lines.append(f"| {est} | " + " | ".join(_fmt(summ[a]) for a in arms) + " |")
    best = {a: min(early.summary(e)[a][0] for e in early.rmse) for a in arms}
    simple = min(best["+ jitter"], best["+ mixup"])
    lines += ["", "Best pipeline per augmentation (any estimator): "
              + "; ".join(f"{a} {v:.2f}" for a, v in best.items())
              + f". Against the best jitter / mixup pipeline ({simple:.2f}): cVAE {best['+ cVAE'] / simple - 1:+.0%}, "
              f"diffusion {best[experiment.DIFFUSION_ARM] / simple - 1:+.0%}.", ""]

    speed = []
    cond = np.column_stack([np.linspace(0.7, 1.0, 1000), np.full(1000, 24.0), np.full(1000, 2.0)])
    for kind in generators.KINDS:
        try:
            gen = generators.load(kind)
        except registry.ModelNotFound:
            continue
        generators.sample(gen, cond[:10])
        t1 = time.perf_counter()
        generators.sample(gen, cond, seed=0)
        speed.append(f"{kind} {time.perf_counter() - t1:.2f} s")
    lines += ["Generation time for 1,000 curves with the bundled weights, CPU 1 thread: " + ", ".join(speed) + ".", ""]

    kind, why = generators.pick({k: metrics[k] for k in generators.KINDS})
    lines += [f"**Default generator: {kind}** ({why}); the health page uses it and offers the other.", "",
              "| target (issue 24) | cVAE | | diffusion | |", "|---|---|---|---|---|"]
    for label, key, bar in (("discriminative score <= 0.1, whole curve", "discriminative_score", 0.1),
                            ("TSTR / TRTR <= 1.3", "tstr_over_trtr", 1.3)):
        lines.append(f"| {label} | " + " | ".join(f"{metrics[k][key]:.3f} | {_hit(metrics[k][key] <= bar)}"
                                                  for k in generators.KINDS) + " |")
    lines += ["", "Generators part: `python -m battgai.bench health --part generators`, "
              f"{dt.date.today().isoformat()}, "
              f"{time.time() - t0:.0f} s."]
    if write_cards:
        for k in generators.KINDS:
            try:
                card = registry.load_card(generators.NAMES[k])
            except registry.ModelNotFound:
                continue
            registry.write_card(dataclasses.replace(card, metrics=metrics[k]))
    return [GENERATORS_START, *lines, GENERATORS_END]


def extrapolation_section() -> list[str]:
    """Issue 33 item 2: leave-one-cell-out on the window-observed NASA cells, the held-out cell's curves judged
    against the training range of the other cells (:class:`~battgai.health.estimation.estimator.TrainingRange`)."""
    from battgai.health import workflow
    from battgai.health.estimation.estimator import FeatureEstimator, rmse_points
    from battgai.health.preprocess import nasa_curves, window_observed

    curves = nasa_curves()
    cohort = curves.subset(window_observed(curves))
    lines = ["<!-- health-extrapolation:start -->",
             "### Estimates outside the training range (`python -m battgai bench health --part extrapolation`)", "",
             "Leave-one-cell-out over the window-observed NASA cells with `ridge_ic` (the page's estimator, retrained "
             "without the cell). A curve is flagged when its window charge, C-rate, temperature or estimated SOH lies "
             "outside the training cells' (conditions with a tolerance of x1.1 / 3 C). Flagged curves are shown "
             "apart on 'Estimate SOH' and left out of its RMSE. 'below range': curves whose true SOH is under the "
             "lowest training SOH.", "",
             "| held-out cell | curves | flagged | below range | of those flagged | RMSE all | RMSE unflagged | "
             "RMSE in range (true SOH) |", "|---|---|---|---|---|---|---|---|"]
    for cell in np.unique(cohort.cell_id):
        train, test = cohort.subset(cohort.cell_id != cell), cohort.subset(cohort.cell_id == cell)
        est = workflow.estimate_soh(test, FeatureEstimator("ridge_ic").fit(train), "ridge_ic")
        below = est.curves.soh < train.soh.min()
        inside = ~below
        lines.append(
            f"| {cell} | {len(est.curves)} | {int(est.extrapolating.sum())} | {int(below.sum())} | "
            + (f"{100 * est.extrapolating[below].mean():.0f} %" if below.any() else "-")
            + f" | {est.rmse_all:.2f} | {est.rmse:.2f} | "
            + (f"{rmse_points(est.curves.soh[inside], est.predicted[inside]):.2f}" if inside.any() else "-") + " |")
    return [*lines, "<!-- health-extrapolation:end -->"]


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai.bench import read_section, replace_block, write_section
    from battgai.core.data import DataNotFound
    from battgai.health.generation.sample import load, sample
    from battgai.health.preprocess import WINDOW_V, nasa_curves, window_observed

    p = argparse.ArgumentParser(prog="python -m battgai.bench health")
    p.add_argument("--splits", type=int, default=10, help="random pairs of training cells (wide cohort)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per split")
    p.add_argument("--steps", type=int, default=1000, help="CVAE steps per low-data run")
    p.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    p.add_argument("--part", choices=("all", "transfer", "band", "generators", "loco", "extrapolation"),
                   default="all", help="run only that section and replace it inside the health section")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.time()
    # Each part's lines carry their block's markers: one rerun alone replaces just that block.
    parts = {"transfer": ("health-transfer", transfer_section), "loco": ("health-loco", loco_section),
             "band": ("health-band", band_section),
             "extrapolation": ("health-extrapolation", extrapolation_section),
             "generators": ("health-generators", lambda: generators_section(write_cards=not args.no_write))}
    if args.part != "all":
        block, section = parts[args.part]
        md = "\n".join(section())
        print(md)
        if not args.no_write:
            write_section("health", replace_block(read_section("health"), block, md))
        return

    curves = nasa_curves()
    lines = [
        f"Command: `python -m battgai.bench health --splits {args.splits} --seeds {args.seeds} "
        f"--steps {args.steps}`; {dt.date.today().isoformat()}; CPU only (2 cores shared with other jobs, "
        "torch 1 thread).",
        "",
        f"Data: NASA PCoE discharge curves, {len(curves)} cycles of {len(np.unique(curves.cell_id))} cells "
        "(outlier-flagged cycles dropped), each resampled to Q(V) on a 4.2 -> 2.7 V grid. SOH = NASA capacity "
        f"to 2.7 V / 2.0 Ah. Estimators see only the {WINDOW_V[0]} -> {WINDOW_V[1]} V window (+ temperature, "
        "current); ridge uses alpha 0.1 on fixed-scale features. Every split is by cell; in the low-data runs the "
        "CVAE is retrained on the 2 training cells only, its SOH targets uniform over their range widened by "
        "0.05, its latent points drawn from their posteriors; each augmentation adds as many curves as the real "
        "training set (jitter: 1 % of nominal Gaussian noise; mixup: Beta(0.4, 0.4)).",
        "",
    ]
    classic = curves.subset(np.isin(curves.cell_id, CLASSIC))
    wide = curves.subset(window_observed(curves))
    a_lines, a = cohort_report("24 C / 2 A cells (the setting of DESIGN.md's bar)", curves, classic, 6,
                               3, args.steps, sensitivity=True)
    b_lines, b = cohort_report("All cells whose loaded voltage starts at or above 3.88 V (across temperatures "
                               "and currents)", curves, wide, args.splits, args.seeds, args.steps)
    lines += a_lines + b_lines
    try:
        lines += trajectory_report(6, 2)
    except DataNotFound as exc:
        lines += [f"Per-cycle feature datasets not measured: {exc}", ""]

    gen = load()
    cond = np.column_stack([np.linspace(0.7, 1.0, 10_000), np.full(10_000, 24.0), np.full(10_000, 2.0)])
    sample(gen, cond[:100])
    t0 = time.perf_counter()
    sample(gen, cond, seed=0, z_source="prior")
    speed_prior = len(cond) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    sample(gen, cond, seed=0)
    speed_bank = len(cond) / (time.perf_counter() - t0)
    lines += [f"Generation speed, bundled `health_cvae`, CPU 1 thread, batch 10,000: {speed_bank:,.0f} curves/s "
              f"(latent bank), {speed_prior:,.0f} curves/s (prior).", ""]

    lines += [*targets_table(a, b), *loco_section(),
              *generators_section(not args.no_write), *transfer_section(), *band_section(),
              f"Bench wall time {time.time() - t_start:.0f} s."]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("health", md)
