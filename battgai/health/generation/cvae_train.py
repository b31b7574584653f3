"""The cVAE's training loop and its model card (``python -m battgai train health --model cvae`` runs it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from battgai.health.generation.model import CVAE, CVAEConfig, single_thread
from battgai.health.generation.sample import Generator, shape, with_bank
from battgai.health.preprocess import CurveSet


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

    The returned generator carries the latent bank of ``curves`` (see :mod:`battgai.health.generation.sample`).
    """
    if len(curves) < 4:
        raise ValueError(f"need at least 4 curves to train the generator, got {len(curves)}")
    x = shape(curves)
    # The end range is the training curves' own (widened below: a decoder's tanh need not saturate there).
    end_range = (float(x[:, -1].min()) - 0.002, float(x[:, -1].max()))
    config = dataclasses.replace(config or CVAEConfig(), end_range=end_range)
    model = fit_cvae(x, curves.conditions(), config, train or TrainConfig(), np.array([0.02, 2.0, 0.25]), progress)
    return with_bank(Generator(model, curves.nominal_ah, grid=curves.grid.copy()), curves)


def cvae_card(gen: Generator, curves: CurveSet, train: TrainConfig, metrics: dict[str, float]):
    from battgai.core.registry import ModelCard
    from battgai.health.preprocess import NASA_DATA

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
