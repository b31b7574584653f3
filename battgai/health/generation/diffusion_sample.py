"""Load the bundled diffusion generator and sample curves with the cVAE's sample API.

A sampled vector (:func:`encode`: the curve's log-increments, its ends and its first loaded
voltage) is decoded and rendered into a curve the way a cycler record is resampled
(:func:`battgai.health.preprocess.render`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.generation.diffusion import Denoiser, DiffusionConfig
from battgai.health.generation.sample import card_config
from battgai.health.preprocess import VOLTAGE_GRID, CurveSet, render

DEFAULT_MODEL = "health_diffusion"
#: DDIM steps at sampling: 40 denoiser calls, ~0.2 s for 1,000 curves on one thread.
SAMPLE_STEPS = 40


@dataclasses.dataclass
class DiffusionGenerator:
    """A trained denoiser with what it needs to produce curves in Ah (nominal, grid, name)."""

    model: Denoiser
    nominal_ah: float
    name: str = "untrained"
    sha256: str = ""
    grid: np.ndarray = dataclasses.field(default_factory=lambda: VOLTAGE_GRID.copy())

    def tensors(self) -> dict:
        return dict(self.model.state_dict())


def load(name: str = DEFAULT_MODEL) -> DiffusionGenerator:
    """Rebuild a bundled diffusion generator from its card and verified weights."""
    from battgai.core import registry

    state, card = registry.load_tensors(name)
    nominal, grid, kwargs = card_config(card.config)
    model = Denoiser(DiffusionConfig(**kwargs))
    model.load_state_dict(dict(state))
    model.eval()
    return DiffusionGenerator(model, nominal, name, card.sha256, grid)


#: Floor added before the log of a curve's increments: increments above the first loaded voltage are
#: exactly 0, the smallest loaded ones ~1e-4 of the capacity.
LOG_EPS = 1e-5


def encode(shape: np.ndarray, v_start: np.ndarray) -> np.ndarray:
    """What the model draws for curve shapes ``Q(V) / capacity``: log-increments and three scalars.

    Columns: the charge of the first loaded sample (column 0 of the shape), ``log(increment +
    LOG_EPS)`` down the grid, the end value, the first loaded voltage. On this scale the noise a
    sampler leaves is relative to each increment, so the tail of the curve (increments ~0.1 % of
    the capacity) stays smooth and the loaded part never goes flat; the end is drawn on its own,
    so the capacity stays the asked one.
    """
    return np.column_stack([shape[:, 0], np.log(np.clip(np.diff(shape, axis=1), 0.0, None) + LOG_EPS),
                            shape[:, -1], v_start])


def decode(vec: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Curve shapes and first loaded voltages from vectors laid out as :func:`encode` writes them."""
    v_start = np.clip(vec[:, -1], grid[-1], grid[0])
    top, end = np.clip(vec[:, 0], 0.0, 0.5), np.clip(vec[:, -2], 0.5, 1.0)
    inc = np.clip(np.exp(vec[:, 1:-2]) - LOG_EPS, 0.0, None)
    inc[grid[None, 1:] > v_start[:, None]] = 0.0  # nothing flows before the load is on
    total = inc.sum(axis=1, keepdims=True)
    x = top[:, None] + np.concatenate([np.zeros((len(vec), 1)), np.cumsum(inc, axis=1)], axis=1) \
        * ((end - top)[:, None] / np.where(total > 0, total, 1.0))
    return render(x, v_start, grid), v_start


def sample(gen: DiffusionGenerator, conditions: np.ndarray, seed: int = 0, nominal_ah: float | None = None,
           steps: int = SAMPLE_STEPS) -> CurveSet:
    """Generate one curve per row of ``conditions`` = (SOH, temperature C, current A).

    Same contract as :func:`battgai.health.generation.sample.sample` (seeded, SOH x nominal sets the
    capacity, ``cell_id`` "synthetic", ``q`` in Ah); ``v_start`` of the result is the sampled
    first loaded voltage.
    """
    import torch

    from battgai.health.generation.sample import check_conditions

    cond = check_conditions(conditions)
    n = len(cond)
    nominal = gen.nominal_ah if nominal_ah is None else float(nominal_ah)
    noise = torch.randn((n, gen.model.config.n_dim), generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        z = gen.model.ddim(torch.from_numpy(cond), noise, steps)
        raw = (z * gen.model.x_std + gen.model.x_mean).numpy().astype(float)
    shape, v_start = decode(raw, gen.grid)
    return CurveSet(shape * (cond[:, :1] * nominal), cond[:, 0].astype(float), cond[:, 1].astype(float),
                    cond[:, 2].astype(float), np.array(["synthetic"] * n), np.arange(n), v_start, nominal,
                    np.asarray(gen.grid, float))
