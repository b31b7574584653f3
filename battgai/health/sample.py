"""Load a bundled curve generator and sample discharge curves at chosen SOH and conditions."""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.model import CVAE, CVAEConfig
from battgai.health.preprocess import VOLTAGE_GRID, CurveSet

DEFAULT_MODEL = "health_cvae"


@dataclasses.dataclass
class Generator:
    """A trained CVAE with what it needs to produce curves in Ah (nominal, grid, name, sha256)."""

    model: CVAE
    nominal_ah: float
    name: str = "untrained"
    sha256: str = ""
    grid: np.ndarray = dataclasses.field(default_factory=lambda: VOLTAGE_GRID.copy())


def load(name: str = DEFAULT_MODEL) -> Generator:
    """Rebuild a bundled generator from its card and verified weights."""
    from battgai import registry

    state, card = registry.load_tensors(name)
    cfg = dict(card.config)
    nominal = float(cfg.pop("nominal_ah"))
    grid = np.asarray(cfg.pop("grid"), float)
    config = CVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    model = CVAE(config)
    model.load_state_dict(state)
    model.eval()
    return Generator(model, nominal, name, card.sha256, grid)


def sample(gen: Generator, conditions: np.ndarray, seed: int = 0, z: np.ndarray | None = None,
           nominal_ah: float | None = None) -> CurveSet:
    """Generate one curve per row of ``conditions`` = (SOH, temperature C, current A).

    Parameters
    ----------
    gen : Generator
    conditions : ndarray, shape (n, 3)
    seed : int
        Seeds the latent draws, so the same call gives the same curves.
    z : ndarray, shape (n, latent), optional
        Decode these latent points instead of drawing from the prior (latent-space exploration).
    nominal_ah : float, optional
        Nominal capacity of the curves to make (default: the training data's). The model works
        on curve shapes, so SOH x nominal sets the capacity of each curve.

    Returns
    -------
    CurveSet
        ``cell_id`` is ``"synthetic"``; ``q`` in Ah.
    """
    import torch

    cond = np.atleast_2d(np.asarray(conditions, dtype=np.float32))
    if cond.shape[1] != 3 or not np.isfinite(cond).all():
        raise ValueError(f"conditions must be finite (n, 3) rows of (SOH, T, |I|), got shape {cond.shape}")
    if np.any(cond[:, 0] <= 0) or np.any(cond[:, 0] > 1.3):
        raise ValueError("SOH must lie in (0, 1.3] (a fraction of nominal capacity)")
    n = cond.shape[0]
    nominal = gen.nominal_ah if nominal_ah is None else float(nominal_ah)
    if z is None:
        g = torch.Generator().manual_seed(int(seed))
        zt = torch.randn(n, gen.model.config.latent, generator=g)
    else:
        zt = torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)
        if zt.shape != (n, gen.model.config.latent):
            raise ValueError(f"z must have shape {(n, gen.model.config.latent)}, got {tuple(zt.shape)}")
    with torch.no_grad():
        x = gen.model.decode(zt, torch.from_numpy(cond)).numpy().astype(float)
    return CurveSet(x * (cond[:, :1] * nominal), cond[:, 0].astype(float), cond[:, 1].astype(float),
                    np.abs(cond[:, 2]).astype(float), np.array(["synthetic"] * n), np.arange(n),
                    np.full(n, float(gen.grid[0])), nominal, gen.grid)


def shape(curves: CurveSet) -> np.ndarray:
    """The curves the CVAE models: ``Q(V)`` divided by each curve's labelled capacity."""
    return curves.q / (curves.soh[:, None] * curves.nominal_ah)


def encode(gen: Generator, curves: CurveSet) -> np.ndarray:
    """Posterior means of real curves in the latent space, ``(n, latent)``."""
    import torch

    with torch.no_grad():
        x = torch.tensor(shape(curves), dtype=torch.float32)
        c = torch.tensor(curves.conditions(), dtype=torch.float32)
        return gen.model.encode(x, c)[0].numpy().astype(float)


def nearest(synthetic: CurveSet, real: CurveSet) -> np.ndarray:
    """Index of the closest real curve (RMS over the grid, in Ah) for every synthetic curve."""
    if len(real) == 0:
        raise ValueError("no real curves to compare with")
    d = ((synthetic.q[:, None, :] - real.q[None, :, :]) ** 2).mean(axis=2)
    return d.argmin(axis=1)
