"""Conditional denoising diffusion model of discharge curves (DDPM training, DDIM sampling).

The model draws the whole resampled curve at once as one vector
(:func:`battgai.health.generation.diffusion_sample.encode`: the log-increments of ``Q(V) / capacity`` down
the voltage grid, the charge of the first loaded sample, the end, and the first loaded voltage
where the rest-to-load step lands), each coordinate standardised over the training curves. A
small MLP predicts the noise from the noisy vector, the diffusion time and the conditions (SOH,
temperature, current), as in DiffBatt
(a denoising diffusion model of capacity / discharge curves conditioned on health and
operating conditions). Sampling takes a few DDIM steps, so hundreds of curves take well under
a second on one CPU thread.

References
----------
Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021 (cosine schedule).
Eivazi et al., "DiffBatt: A Diffusion Model for Battery Degradation Prediction and Synthesis", 2024.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
import torch.nn as nn


@dataclasses.dataclass
class DiffusionConfig:
    n_dim: int = 63  # first-sample charge, 60 log-increments, end, v_start (diffusion_sample.encode)
    n_cond: int = 3  # SOH, temperature, current
    hidden: int = 256
    n_time: int = 32  # sinusoidal time-embedding size
    timesteps: int = 1000
    #: Standardisation of the curve vector and of the conditions, fitted on the training data and
    #: kept in the card so the model rebuilds with the scaling it was trained with.
    x_mean: tuple[float, ...] = ()
    x_std: tuple[float, ...] = ()
    cond_mean: tuple[float, ...] = (0.8, 25.0, 2.0)
    cond_std: tuple[float, ...] = (0.1, 10.0, 1.0)


def alpha_bar(t: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Cosine schedule: fraction of signal variance left at integer step ``t`` (0 = clean)."""
    s = 0.008
    f = torch.cos((t.float() / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    return (f / math.cos(s / (1 + s) * math.pi / 2) ** 2).clamp(1e-5, 1.0)


class Denoiser(nn.Module):
    """MLP predicting the added noise from (noisy standardised vector, time embedding, scaled conditions)."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.net = nn.Sequential(
            nn.Linear(config.n_dim + config.n_cond + config.n_time, h), nn.SiLU(),
            nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, config.n_dim))
        self.register_buffer("cond_mean", torch.tensor(config.cond_mean, dtype=torch.float32))
        self.register_buffer("cond_std", torch.tensor(config.cond_std, dtype=torch.float32))
        self.register_buffer("x_mean", torch.tensor(config.x_mean or [0.0] * config.n_dim, dtype=torch.float32))
        self.register_buffer("x_std", torch.tensor(config.x_std or [1.0] * config.n_dim, dtype=torch.float32))

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        half = self.config.n_time // 2
        freq = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        arg = t.float()[:, None] / self.config.timesteps * 1000.0 * freq[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = (cond - self.cond_mean) / self.cond_std
        return self.net(torch.cat([x_t, c, self.embed(t)], dim=1))

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise-prediction MSE at a uniformly drawn step (the simple DDPM objective); ``x0`` standardised."""
        t = torch.randint(1, self.config.timesteps + 1, (len(x0),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        ab = alpha_bar(t, self.config.timesteps)[:, None]
        return ((self(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, cond) - eps) ** 2).mean()

    @torch.no_grad()
    def ddim(self, cond: torch.Tensor, noise: torch.Tensor, steps: int = 40) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from ``noise`` to standardised curves in ``steps`` denoiser calls."""
        ts = torch.linspace(self.config.timesteps, 0, steps + 1).round().long()
        x = noise
        for t, t_next in itertools.pairwise(ts):
            tt = torch.full((len(x),), int(t))
            ab, ab_next = alpha_bar(tt, self.config.timesteps)[:, None], alpha_bar(t_next, self.config.timesteps)
            eps = self(x, tt, cond)
            # Clipping the clean estimate to a few training deviations keeps the first, noisiest steps
            # from overshooting (the curves are standardised per grid point).
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-6.0, 6.0)
            x = x0 if int(t_next) == 0 else ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
        return x
