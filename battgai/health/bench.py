"""``python -m battgai.bench health``: the augmentation experiment, quality scores and speed.

Prints a markdown report and writes it into docs/BENCHMARKS.md (health section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time

import numpy as np

TARGETS = "low-data RMSE cut >= 20 % and beats jitter and mixup; full-data RMSE <= 1.5; |acc-0.5| <= 0.1; " \
          "TSTR <= 1.3x TRTR"


def _fmt(mean_std: tuple[float, float]) -> str:
    return f"{mean_std[0]:.2f} +- {mean_std[1]:.2f}"


def _hit(ok: bool) -> str:
    return "hit" if ok else "**missed**"


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai.bench import write_section
    from battgai.health import experiment
    from battgai.health.estimator import rmse_points
    from battgai.health.preprocess import WINDOW_V, nasa_curves, window_observed
    from battgai.health.sample import load, sample
    from battgai.health.train import TrainConfig

    p = argparse.ArgumentParser(prog="python -m battgai.bench health")
    p.add_argument("--splits", type=int, default=10, help="random pairs of training cells")
    p.add_argument("--seeds", type=int, default=3, help="seeds per split")
    p.add_argument("--steps", type=int, default=1000, help="CVAE steps per low-data run")
    p.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.time()

    curves = nasa_curves()
    cohort = curves.subset(window_observed(curves))
    cells = sorted(np.unique(cohort.cell_id))
    lines = [
        f"Command: `python -m battgai.bench health --splits {args.splits} --seeds {args.seeds} "
        f"--steps {args.steps}`; {dt.date.today().isoformat()}; CPU, 2 cores shared, torch 1 thread "
        f"({platform.machine()}).",
        "",
        f"Data: NASA PCoE discharge curves, {len(curves)} cycles of {len(np.unique(curves.cell_id))} cells "
        "(outlier-flagged cycles dropped). SOH = NASA capacity to 2.7 V / 2.0 Ah. Estimators see only the "
        f"{WINDOW_V[0]} -> {WINDOW_V[1]} V window (+ temperature, current). Evaluation cohort: the "
        f"{len(cohort)} curves of {len(cells)} cells whose loaded voltage starts at or above 3.88 V "
        f"({', '.join(cells)}); at 4 A or 4 C the window is cut off and says little about health. "
        "All splits are by cell.",
        "",
    ]

    print("full-data leave-one-cell-out...", flush=True)
    loco = experiment.loco(cohort, ("ridge", "gbm", "mlp"))
    coulomb = rmse_points(cohort.soh, cohort.q[:, -1] / cohort.nominal_ah)
    lines += [
        "### Full data: leave-one-cell-out, real curves only",
        "",
        "| estimator | RMSE pooled over curves | mean of per-cell RMSE | worst cell |",
        "|---|---|---|---|",
    ]
    for kind, r in loco.items():
        worst = max(r.per_cell, key=r.per_cell.get)
        lines.append(f"| {kind} | {r.pooled_rmse:.2f} | {r.mean_rmse:.2f} | {worst} ({r.per_cell[worst]:.1f}) |")
    lines += [f"| coulomb counting on the whole curve (sanity reference, not an estimator) | {coulomb:.2f} "
              "| | |", ""]

    print("low-data augmentation experiment...", flush=True)
    aug = experiment.augmentation_experiment(cohort, n_train_cells=2, n_splits=args.splits,
                                             seeds=tuple(range(args.seeds)), estimators=("ridge", "gbm"),
                                             steps=args.steps)
    n_runs = len(aug.splits) * len(aug.seeds)
    lines += [
        f"### Low data: train on 2 cells, test on the other {len(cells) - 2}",
        "",
        f"{len(aug.splits)} random pairs of training cells x {len(aug.seeds)} seeds = {n_runs} runs; RMSE (SOH "
        "points) pooled over the held-out curves of each run, mean +- std over runs; change relative to real "
        "only, paired by run. Each augmentation adds as many curves as the real training set. The CVAE is "
        f"retrained in every run on the 2 training cells only ({args.steps} steps); its SOH targets are "
        "uniform over the training range widened by 0.05.",
        "",
        "| estimator | real only | + jitter | + mixup | + cVAE | cVAE vs real | jitter vs real | mixup vs real |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for est in ("ridge", "gbm"):
        s = aug.summary(est)
        lines.append(
            f"| {est} | {_fmt(s['real only'])} | {_fmt(s['+ jitter'])} | {_fmt(s['+ mixup'])} | "
            f"{_fmt(s['+ cVAE'])} | {aug.relative_change(est, '+ cVAE'):+.1%} | "
            f"{aug.relative_change(est, '+ jitter'):+.1%} | {aug.relative_change(est, '+ mixup'):+.1%} |"
        )
    lines += ["", "Splits: " + "; ".join("+".join(s) for s in aug.splits), ""]

    print("generator quality (leave-one-cell-out)...", flush=True)
    q = experiment.generator_quality(curves, cohort, TrainConfig())
    lines += [
        "### Synthetic-data quality (generator retrained without each held-out cell)",
        "",
        "| score | value |",
        "|---|---|",
        f"| TSTR: ridge trained on synthetic only, RMSE on held-out real | {q.tstr_rmse:.2f} |",
        f"| TRTR: ridge trained on real, RMSE on held-out real | {q.trtr_rmse:.2f} |",
        f"| TSTR / TRTR | {q.tstr_ratio:.2f} |",
        f"| full data, real + synthetic (ridge) | {q.full_aug_rmse:.2f} |",
        f"| discriminative score, whole curve | {q.discriminative_score:.3f} |",
        f"| discriminative score, 3.9 -> 3.5 V window | {q.discriminative_score_window:.3f} |",
        "",
    ]

    gen = load()
    cond = np.column_stack([np.linspace(0.7, 1.0, 10_000), np.full(10_000, 24.0), np.full(10_000, 2.0)])
    sample(gen, cond[:100])
    t0 = time.perf_counter()
    sample(gen, cond, seed=0)
    speed = len(cond) / (time.perf_counter() - t0)
    lines += [f"Generation speed (bundled `health_cvae`, CPU, 1 thread, batch 10,000): {speed:,.0f} curves/s.", ""]

    ridge_aug = aug.summary("ridge")
    best_full = min(r.pooled_rmse for r in loco.values())
    cut = -aug.relative_change("ridge", "+ cVAE")
    beats = ridge_aug["+ cVAE"][0] < min(ridge_aug["+ jitter"][0], ridge_aug["+ mixup"][0])
    lines += [
        "### Targets (issue 6)",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| synthetic cuts low-data RMSE by >= 20 % (ridge) | {cut:+.1%} | {_hit(cut >= 0.2)} |",
        f"| synthetic beats jitter and mixup (ridge, mean RMSE) | {ridge_aug['+ cVAE'][0]:.2f} vs "
        f"{ridge_aug['+ jitter'][0]:.2f} / {ridge_aug['+ mixup'][0]:.2f} | {_hit(beats)} |",
        f"| full-data held-out RMSE <= 1.5 (best estimator, pooled) | {best_full:.2f} | {_hit(best_full <= 1.5)} |",
        f"| discriminative score <= 0.1 (whole curve) | {q.discriminative_score:.3f} | "
        f"{_hit(q.discriminative_score <= 0.1)} |",
        f"| TSTR within 1.3x TRTR | {q.tstr_ratio:.2f}x | {_hit(q.tstr_ratio <= 1.3)} |",
        "",
        f"Bench wall time {time.time() - t_start:.0f} s.",
    ]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("health", md)
