"""Train the diffusion curve generator: ``python -m battgai.train health --model diffusion``.

The training loop and the model card; the bundled model is trained on every NASA cell, its card's
metrics come from the same configuration retrained without each held-out cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from battgai.health.generation.diffusion import Denoiser, DiffusionConfig
from battgai.health.generation.diffusion_sample import DiffusionGenerator
from battgai.health.preprocess import CurveSet

#: Floors of the standardisation: coordinates that barely vary (log-increments above every loaded
#: start, the end) must not turn a tiny wiggle into whole deviations; v_start is in volts.
MIN_SHAPE_STD, MIN_VSTART_STD = 1e-3, 0.01
#: Condition scaling floors (SOH, C, A), as for the cVAE: a condition held constant cannot blow up.
MIN_COND_STD = np.array([0.02, 2.0, 0.25])


@dataclasses.dataclass
class DiffusionTrainConfig:
    steps: int = 3000
    batch: int = 256
    lr: float = 2e-3
    #: Samples come from an exponential moving average of the weights (as in DDPM): the last
    #: minibatches' noise otherwise shows in every curve.
    ema: float = 0.999
    seed: int = 0


def vectors(curves: CurveSet) -> np.ndarray:
    """What the model draws for ``curves`` (see :func:`battgai.health.generation.diffusion_sample.encode`)."""
    from battgai.health.generation.diffusion_sample import encode
    from battgai.health.generation.sample import shape

    return encode(shape(curves), curves.v_start)


def train_diffusion(curves: CurveSet, config: DiffusionConfig | None = None,
                    train: DiffusionTrainConfig | None = None,
                    progress: Callable[[float], None] | None = None) -> DiffusionGenerator:
    """Fit a :class:`Denoiser` to ``curves`` (Adam + cosine decay); ~40 s per 3,000 steps on one thread."""
    import torch

    from battgai.health.generation.model import single_thread

    if len(curves) < 4:
        raise ValueError(f"need at least 4 curves to train the generator, got {len(curves)}")
    train = train or DiffusionTrainConfig()
    x, cond = vectors(curves), curves.conditions()
    floor = np.r_[np.full(x.shape[1] - 1, MIN_SHAPE_STD), MIN_VSTART_STD]
    config = dataclasses.replace(
        config or DiffusionConfig(), n_dim=x.shape[1], n_cond=cond.shape[1],
        x_mean=tuple(map(float, x.mean(axis=0))), x_std=tuple(map(float, np.maximum(x.std(axis=0), floor))),
        cond_mean=tuple(map(float, cond.mean(axis=0))),
        cond_std=tuple(map(float, np.maximum(cond.std(axis=0), MIN_COND_STD))))
    torch.manual_seed(train.seed)
    model = Denoiser(config)
    xt = (torch.tensor(x, dtype=torch.float32) - model.x_mean) / model.x_std
    c = torch.tensor(cond, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, train.steps)
    g = torch.Generator().manual_seed(train.seed)
    ema = [p.detach().clone() for p in model.parameters()]
    with single_thread():
        for step in range(train.steps):
            idx = torch.randint(0, len(xt), (min(train.batch, len(xt)),), generator=g)
            loss = model.loss(xt[idx], c[idx], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for e, p in zip(ema, model.parameters(), strict=True):
                    e.lerp_(p, 1.0 - train.ema)
            if progress is not None and step % 100 == 0:
                progress(step / train.steps)
    with torch.no_grad():
        for e, p in zip(ema, model.parameters(), strict=True):
            p.copy_(e)
    model.eval()
    return DiffusionGenerator(model, curves.nominal_ah, grid=curves.grid.copy())


def card(gen: DiffusionGenerator, curves: CurveSet, train: DiffusionTrainConfig, metrics: dict[str, float]):
    """The model card of a diffusion generator trained on ``curves`` with ``train``."""
    from battgai.core.registry import ModelCard
    from battgai.health.generation.diffusion_sample import SAMPLE_STEPS
    from battgai.health.preprocess import NASA_DATA

    cfg = dataclasses.asdict(gen.model.config) | {"nominal_ah": gen.nominal_ah, "grid": [float(v) for v in gen.grid]}
    return ModelCard(
        name="health_diffusion", task="health",
        architecture="conditional denoising diffusion model (DDPM objective, cosine schedule, 1000 steps; MLP "
                     f"denoiser 3 x {gen.model.config.hidden}) over a curve's log-increments of Q(V) / capacity on a "
                     "4.2 -> 2.7 V grid, the charge of its first loaded sample, its end and its first loaded "
                     f"voltage; DDIM sampling in {SAMPLE_STEPS} steps",
        config=cfg, parameters=sum(p.numel() for p in gen.model.parameters()),
        training_data=f"{NASA_DATA}; {len(curves)} curves of {len(np.unique(curves.cell_id))} cells",
        split="bundled model: all cells. Metrics: leave-one-cell-out over the cells where the 3.9 -> 3.5 V "
              "window is observed, the generator retrained without the held-out cell each time",
        metrics=metrics, metrics_command="python -m battgai.bench health --part generators",
        retrain_command=f"python -m battgai.train health --model diffusion --steps {train.steps}",
        notes="Conditions: SOH (capacity to 2.7 V / 2.0 Ah), ambient temperature (C), |mean discharge current| "
              "(A). Sampled vectors are rendered as a cycler record is resampled: flat above the sampled first "
              "loaded voltage, non-decreasing, at most the labelled capacity. Metrics as for health_cvae "
              "(tstr_*: ridge on window features trained on synthetic curves only; discriminative score: "
              "|accuracy - 0.5| of a gradient-boosting classifier real vs synthetic, 5-fold grouped by cell).",
    )
