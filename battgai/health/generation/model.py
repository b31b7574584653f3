"""Conditional VAE over resampled discharge curves ``Q(V)``, conditioned on SOH, temperature and current.

The model works on the curve's shape, ``Q(V) / capacity``: the decoder emits a softmax over the
voltage grid and sums it, so every generated shape is monotone (charge never flows back) and
ends near 1 at 2.7 V (one extra output moves the end inside a range fitted to the training curves:
coulomb counting and the capacity label differ slightly in real records, and an end of exactly 1,
or above every real one, gives synthetic curves away). Multiplying by the SOH condition x nominal
then gives a curve whose capacity is the one asked for; a prior draw cannot land on another
cell's capacity. The latent space
is 2D by default: SOH and the conditions carry most of a curve, the two latent axes hold what is
left (cell-to-cell shape), and a 2D map of it is explorable on the page.

References
----------
Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
Sohn, Lee and Yan, "Learning Structured Output Representation using Deep Conditional Generative
Models", NeurIPS 2015 (the conditional VAE).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class CVAEConfig:
    n_grid: int = 61
    n_cond: int = 3  # SOH, temperature, current
    latent: int = 2
    hidden: int = 128
    #: Curve noise level (fraction of nominal) the Gaussian likelihood assumes: sets how much
    #: reconstruction is worth against the KL term.
    sigma: float = 0.02
    #: Condition scaling (mean, std per condition), fitted on the training data and kept in the
    #: card so the model rebuilds with the scaling it was trained with.
    cond_mean: tuple[float, ...] = (0.8, 25.0, 2.0)
    cond_std: tuple[float, ...] = (0.1, 10.0, 1.0)
    #: True: the monotone curve-shape decoder below; False: a plain Gaussian decoder over
    #: standardised vectors (per-cycle feature rows, see :mod:`battgai.health.generation.trajectory`).
    monotone: bool = True
    #: Range of the shape's end (Q at the last grid voltage / labelled capacity). Training fits it to
    #: the training curves (NASA: 0.993-1.000; coulomb counting never exceeds the capacity label), so
    #: generated ends fall where real ones do; the default is the range of cards written before it.
    end_range: tuple[float, float] = (0.98, 1.02)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the setting.

    These networks are far too small to gain from intra-op threads, and on a shared 2-core
    machine the extra thread costs up to 40x in contention (measured: an early-life experiment
    337 s on 2 threads under load, 9 s on 1).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, n_out))


class CVAE(nn.Module):
    """Encoder q(z | x, c) and decoder p(x | z, c); ``x`` is the shape ``Q(V) / capacity`` on the grid."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _mlp(config.n_grid + config.n_cond, config.hidden, 2 * config.latent)
        self.decoder = _mlp(config.latent + config.n_cond, config.hidden, config.n_grid + int(config.monotone))
        self.register_buffer("cond_mean", torch.tensor(config.cond_mean, dtype=torch.float32))
        self.register_buffer("cond_std", torch.tensor(config.cond_std, dtype=torch.float32))

    def scale(self, cond: torch.Tensor) -> torch.Tensor:
        return (cond - self.cond_mean) / self.cond_std

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(torch.cat([x, self.scale(cond)], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 5.0)

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.decoder(torch.cat([z, self.scale(cond)], dim=1))
        if not self.config.monotone:
            return out
        # Softmax increments summed down the voltage grid: monotone, ending inside end_range.
        lo, hi = self.config.end_range
        end = 0.5 * (lo + hi) + 0.5 * (hi - lo) * torch.tanh(out[:, -1:])
        return torch.cumsum(F.softmax(out[:, :-1], dim=1), dim=1) * end

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, cond)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, cond), mu, logvar

    def loss(self, x: torch.Tensor, cond: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Negative ELBO per curve: Gaussian reconstruction at ``sigma`` plus ``beta`` x KL."""
        recon, mu, logvar = self(x, cond)
        rec = ((recon - x) ** 2).sum(dim=1).mean() / (2 * self.config.sigma**2)
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(dim=1).mean()
        return rec + beta * kl, {"rec": float(rec.detach()), "kl": float(kl.detach())}
