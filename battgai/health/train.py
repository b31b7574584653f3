"""Train the health models: ``python -m battgai.train health [--model cvae|soh_mlp|soh_ridge_ic|all] [--steps N]``.

- ``health_cvae``: the conditional VAE over all NASA discharge curves (all 15 cells).
- ``health_diffusion``: the diffusion curve generator over all NASA discharge curves (its card's
  metrics are written by ``python -m battgai.bench health --part generators``).
- ``health_soh_mlp``: the MLP SOH estimator on the 3.9 -> 3.5 V window (cells where it is observed).
- ``health_soh_ridge_ic``: ridge on the window charge and incremental-capacity shape (the page's estimator).

Each card's metrics are measured on held-out cells by the same configuration retrained without
them (leave-one-cell-out), so the bundled model itself is the one trained on every cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from battgai.health.generation.cvae_train import TrainConfig, cvae_card, train_cvae
from battgai.health.preprocess import NASA_DATA


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai.core import registry
    from battgai.health.estimation import experiment
    from battgai.health.estimation.estimator import MLPEstimator
    from battgai.health.preprocess import nasa_curves, window_observed

    p = argparse.ArgumentParser(prog="python -m battgai.train health")
    p.add_argument("--model", choices=("cvae", "diffusion", "soh_mlp", "soh_ridge_ic", "all"), default="all")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 1500 cVAE, 10000 diffusion)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    curves = nasa_curves()
    cohort = curves.subset(window_observed(curves))
    tc = TrainConfig(steps=args.steps or TrainConfig.steps, seed=args.seed)
    if args.model in ("cvae", "all"):
        t0 = time.time()
        gen = train_cvae(curves, train=tc)
        print(f"cvae trained in {time.time() - t0:.0f} s")
        quality = experiment.generator_quality(curves, cohort, tc, seed=args.seed)
        card = cvae_card(gen, curves, tc, quality.metrics())
        card = registry.save("health_cvae", gen.tensors(), card)
        print(f"saved health_cvae {card.sha256[:12]} metrics {card.metrics}")
    if args.model in ("diffusion", "all"):
        from battgai.health.generation import diffusion_train, generators

        dc = diffusion_train.DiffusionTrainConfig(steps=args.steps or generators.STEPS["diffusion"], seed=args.seed)
        t0 = time.time()
        gen = diffusion_train.train_diffusion(curves, train=dc)
        print(f"diffusion trained in {time.time() - t0:.0f} s")
        # Held-out metrics take ~10 min (a model per held-out cell): the bench part measures them
        # beside the cVAE's and writes them into both cards.
        card = registry.save("health_diffusion", gen.tensors(), diffusion_train.card(gen, curves, dc, {}))
        print(f"saved health_diffusion {card.sha256[:12]}; now run python -m battgai.bench health --part generators")
    if args.model in ("soh_mlp", "all"):
        loco = experiment.loco(cohort, ("ridge", "mlp"), seed=args.seed)
        est = MLPEstimator(seed=args.seed).fit(cohort)
        card = registry.ModelCard(
            name="health_soh_mlp", task="health",
            architecture="MLP (2 x 64, SiLU) on the 3.9 -> 3.5 V window of Q(V) + temperature + current",
            config=dataclasses.asdict(est.config), parameters=sum(p.numel() for p in est.net.parameters()),
            training_data=f"{NASA_DATA}; {len(cohort)} curves of the {len(np.unique(cohort.cell_id))} "
                          "cells whose loaded voltage starts at or above 3.88 V",
            split="bundled model: all those cells. Metrics: leave-one-cell-out (retrained without each cell)",
            metrics={"loco_rmse_soh_points_mean_over_cells": loco["mlp"].mean_rmse,
                     "loco_rmse_soh_points_pooled": loco["mlp"].pooled_rmse,
                     "ridge_baseline_loco_rmse_mean_over_cells": loco["ridge"].mean_rmse},
            metrics_command="python -m battgai.bench health",
            retrain_command="python -m battgai.train health --model soh_mlp",
            notes="Predicts SOH (fraction); RMSE in SOH percentage points on held-out cells.",
        )
        sd = {k: v for k, v in est.net.state_dict().items()}
        card = registry.save("health_soh_mlp", sd, card)
        print(f"saved health_soh_mlp {card.sha256[:12]} metrics {card.metrics}")
    if args.model in ("soh_ridge_ic", "all"):
        from battgai.health.estimation.estimator import FeatureEstimator

        loco = experiment.loco(cohort, ("ridge", "ridge_ic", "mlp"), seed=args.seed)
        est = FeatureEstimator("ridge_ic").fit(cohort)
        card = registry.ModelCard(
            name="health_soh_ridge_ic", task="health",
            architecture="ridge on the 3.9 -> 3.5 V window: charge, log dQ/dV at 6 voltages, temperature, current",
            config={"alpha": est.alpha, "features": "battgai.health.estimation.estimator.ic_features",
                    "training_range": dataclasses.asdict(est.range_)},
            parameters=int(est.columns_.sum()) + 1,
            training_data=f"{NASA_DATA}; {len(cohort)} curves of the {len(np.unique(cohort.cell_id))} "
                          "cells whose loaded voltage starts at or above 3.88 V",
            split="bundled model: all those cells; penalty by leave-one-cell-out over them. Metrics: "
                  "leave-one-cell-out (retrained, penalty re-picked, without each cell)",
            metrics={"loco_rmse_soh_points_pooled": loco["ridge_ic"].pooled_rmse,
                     "loco_rmse_soh_points_mean_over_cells": loco["ridge_ic"].mean_rmse,
                     "ridge_window_charge_baseline_loco_rmse_pooled": loco["ridge"].pooled_rmse,
                     "mlp_baseline_loco_rmse_pooled": loco["mlp"].pooled_rmse},
            metrics_command="python -m battgai.bench health --part loco",
            retrain_command="python -m battgai.train health --model soh_ridge_ic",
            notes="Predicts SOH (fraction); RMSE in SOH percentage points on held-out cells.",
        )
        card = registry.save("health_soh_ridge_ic", est.tensors(), card)
        print(f"saved health_soh_ridge_ic {card.sha256[:12]} metrics {card.metrics}")
