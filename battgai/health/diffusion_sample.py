"""Load the bundled diffusion generator and sample curves with the cVAE's sample API.

A sampled vector (shape on the grid + first loaded voltage) is rendered into a curve the way a
cycler record is resampled (:func:`battgai.health.preprocess.render`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.diffusion import Denoiser, DiffusionConfig
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
    from battgai import registry

    state, card = registry.load_tensors(name)
    cfg = dict(card.config)
    nominal = float(cfg.pop("nominal_ah"))
    grid = np.asarray(cfg.pop("grid"), float)
    model = Denoiser(DiffusionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))
    model.load_state_dict(dict(state))
    model.eval()
    return DiffusionGenerator(model, nominal, name, card.sha256, grid)


def sample(gen: DiffusionGenerator, conditions: np.ndarray, seed: int = 0, nominal_ah: float | None = None,
           steps: int = SAMPLE_STEPS) -> CurveSet:
    """Generate one curve per row of ``conditions`` = (SOH, temperature C, current A).

    Same contract as :func:`battgai.health.sample.sample` (seeded, SOH x nominal sets the
    capacity, ``cell_id`` "synthetic", ``q`` in Ah); ``v_start`` of the result is the sampled
    first loaded voltage.
    """
    import torch

    from battgai.health.sample import check_conditions

    cond = check_conditions(conditions)
    n = len(cond)
    nominal = gen.nominal_ah if nominal_ah is None else float(nominal_ah)
    noise = torch.randn((n, gen.model.config.n_dim), generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        z = gen.model.ddim(torch.from_numpy(cond), noise, steps)
        raw = (z * gen.model.x_std + gen.model.x_mean).numpy().astype(float)
    v_start = np.clip(raw[:, -1], gen.grid[-1], gen.grid[0])
    shape = render(raw[:, :-1], v_start, gen.grid)
    return CurveSet(shape * (cond[:, :1] * nominal), cond[:, 0].astype(float), cond[:, 1].astype(float),
                    cond[:, 2].astype(float), np.array(["synthetic"] * n), np.arange(n), v_start, nominal,
                    np.asarray(gen.grid, float))
