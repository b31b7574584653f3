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
from collections.abc import Callable

import numpy as np

from battgai.health.model import CVAE, CVAEConfig, single_thread
from battgai.health.preprocess import CurveSet
from battgai.health.sample import Generator, shape, with_bank

NASA_DATA = ("NASA PCoE battery ageing set (Saha and Goebel 2007), shared data cycling/nasa_pcoe; "
             "cycles flagged by flag_outlier dropped")


@dataclasses.dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 128
    lr: float = 2e-3
    #: KL weight is warmed up from 0 over the first third so the decoder learns to use z.
    beta: float = 1.0
    seed: int = 0


def fit_cvae(x: np.ndarray, cond: np.ndarray, config: CVAEConfig, train: TrainConfig,
             min_std: np.ndarray, progress: Callable[[float], None] | None = None) -> CVAE:
    """The training loop: Adam + cosine decay on minibatches of rows of ``x`` with conditions ``cond``.

    Condition scaling (mean, std floored at ``min_std`` so a condition held constant in the data
    cannot blow up) is fitted here and stored in the model's config. ``progress`` (0..1) is
    called every 100 steps.
    """
    import torch

    std = np.maximum(cond.std(axis=0), min_std)
    config = dataclasses.replace(config, n_grid=x.shape[1], n_cond=cond.shape[1],
                                 cond_mean=tuple(map(float, cond.mean(axis=0))),
                                 cond_std=tuple(map(float, std)))
    torch.manual_seed(train.seed)
    model = CVAE(config)
    xt = torch.tensor(x, dtype=torch.float32)
    c = torch.tensor(cond, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, train.steps)
    g = torch.Generator().manual_seed(train.seed)
    with single_thread():
        for step in range(train.steps):
            idx = torch.randint(0, len(xt), (min(train.batch, len(xt)),), generator=g)
            beta = train.beta * min(1.0, 3.0 * step / train.steps)
            loss, _ = model.loss(xt[idx], c[idx], beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None and step % 100 == 0:
                progress(step / train.steps)
    model.eval()
    return model


def train_cvae(curves: CurveSet, config: CVAEConfig | None = None, train: TrainConfig | None = None,
               progress: Callable[[float], None] | None = None) -> Generator:
    """Fit a :class:`CVAE` to ``curves``; a few seconds per 1,000 steps on one CPU thread.

    The returned generator carries the latent bank of ``curves`` (see :mod:`battgai.health.sample`).
    """
    if len(curves) < 4:
        raise ValueError(f"need at least 4 curves to train the generator, got {len(curves)}")
    x = shape(curves)
    # The end range is the training curves' own (widened below: a decoder's tanh need not saturate there).
    end_range = (float(x[:, -1].min()) - 0.002, float(x[:, -1].max()))
    config = dataclasses.replace(config or CVAEConfig(), end_range=end_range)
    model = fit_cvae(x, curves.conditions(), config, train or TrainConfig(), np.array([0.02, 2.0, 0.25]), progress)
    return with_bank(Generator(model, curves.nominal_ah, grid=curves.grid.copy()), curves)


def _cvae_card(gen: Generator, curves: CurveSet, train: TrainConfig, metrics: dict[str, float]):
    from battgai.registry import ModelCard

    cfg = dataclasses.asdict(gen.model.config) | {"nominal_ah": gen.nominal_ah,
                                                   "grid": [float(v) for v in gen.grid]}
    return ModelCard(
        name="health_cvae", task="health", architecture="conditional VAE (MLP encoder/decoder, 2D latent) over the "
        "shape Q(V) / capacity on a 4.2 -> 2.7 V grid; monotone softmax-cumsum decoder, scaled by SOH x nominal",
        config=cfg, parameters=sum(p.numel() for p in gen.model.parameters()),
        training_data=f"{NASA_DATA}; {len(curves)} curves of {len(np.unique(curves.cell_id))} cells",
        split="bundled model: all cells. Metrics: leave-one-cell-out over the cells where the 3.9 -> 3.5 V "
              "window is observed, the generator retrained without the held-out cell each time",
        metrics=metrics, metrics_command="python -m battgai.bench health",
        retrain_command=f"python -m battgai.train health --model cvae --steps {train.steps}",
        notes="Sampling draws latent points from the posterior of training curves at the nearest "
              "(temperature, current), kept with the weights as bank.* tensors; a bank draw also takes that "
              "curve's rest-to-load step (first loaded voltage and the charge at it), and the curve's end lies in "
              "the training curves' range (config end_range); z_source='prior' draws N(0, I) without either. "
              "Conditions: SOH (capacity to 2.7 V / 2.0 Ah), ambient temperature (C), |mean discharge "
              "current| (A). tstr_*: SOH estimator (ridge on window features) trained on synthetic "
              "curves only; discriminative score: |accuracy - 0.5| of a gradient-boosting classifier "
              "real vs synthetic, 5-fold grouped by cell.",
    )


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai import registry
    from battgai.health import experiment
    from battgai.health.estimator import MLPEstimator
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
        card = _cvae_card(gen, curves, tc, quality.metrics())
        card = registry.save("health_cvae", gen.tensors(), card)
        print(f"saved health_cvae {card.sha256[:12]} metrics {card.metrics}")
    if args.model in ("diffusion", "all"):
        from battgai.health import diffusion_train, generators

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
        from battgai.health.estimator import FeatureEstimator

        loco = experiment.loco(cohort, ("ridge", "ridge_ic", "mlp"), seed=args.seed)
        est = FeatureEstimator("ridge_ic").fit(cohort)
        card = registry.ModelCard(
            name="health_soh_ridge_ic", task="health",
            architecture="ridge on the 3.9 -> 3.5 V window: charge, log dQ/dV at 6 voltages, temperature, current",
            config={"alpha": est.alpha, "features": "battgai.health.estimator.ic_features"},
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
