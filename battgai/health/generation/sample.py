"""Load a bundled curve generator and sample discharge curves at chosen SOH and conditions.

Latent points come from one of two sources:

- ``"bank"`` (default when the generator has one): the posterior of a random training curve run
  at the nearest operating conditions (temperature, current), i.e. the aggregate posterior
  restricted to those conditions. SOH stays the requested one, so the curve is that cell's
  "style" at a new state of health. A VAE's prior covers regions the encoder never used, and
  its draws blend cells into shapes no real cell has; drawing from the aggregate posterior
  avoids those holes (Ghosh et al., "From Variational to Deterministic Autoencoders", ICLR 2020).
- ``"prior"``: a standard normal draw.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.generation.model import CVAE, CVAEConfig
from battgai.health.preprocess import VOLTAGE_GRID, CurveSet, render

DEFAULT_MODEL = "health_cvae"
#: Operating conditions are compared on these scales (C, A) when picking bank entries.
COND_SCALE = np.array([20.0, 4.0])


@dataclasses.dataclass
class Generator:
    """A trained CVAE with what it needs to produce curves in Ah (nominal, grid, latent bank, name)."""

    model: CVAE
    nominal_ah: float
    name: str = "untrained"
    sha256: str = ""
    grid: np.ndarray = dataclasses.field(default_factory=lambda: VOLTAGE_GRID.copy())
    #: Posterior mean / log-variance of each training curve and its (SOH, T, |I|).
    bank_mu: np.ndarray | None = None
    bank_logvar: np.ndarray | None = None
    bank_cond: np.ndarray | None = None
    #: First loaded voltage and Q / capacity at it of each bank curve: a bank draw gets the
    #: rest-to-load step of the curve whose latent point it took (see :func:`battgai.health.preprocess.render`).
    bank_v_start: np.ndarray | None = None
    bank_top: np.ndarray | None = None

    def tensors(self) -> dict:
        """Weights plus the latent bank, for :func:`battgai.core.registry.save`."""
        import torch

        out = dict(self.model.state_dict())
        if self.bank_mu is not None:
            for key in ("mu", "logvar", "cond", "v_start", "top"):
                if getattr(self, f"bank_{key}") is not None:
                    out[f"bank.{key}"] = torch.tensor(getattr(self, f"bank_{key}"), dtype=torch.float32)
        return out


def card_config(config: dict) -> tuple[float, np.ndarray, dict]:
    """``(nominal Ah, voltage grid, model constructor arguments)`` from a curve generator's card config
    (JSON lists back to the tuples the config dataclasses hold)."""
    cfg = dict(config)
    nominal = float(cfg.pop("nominal_ah"))
    grid = np.asarray(cfg.pop("grid"), float)
    return nominal, grid, {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def load(name: str = DEFAULT_MODEL) -> Generator:
    """Rebuild a bundled generator from its card and verified weights."""
    from battgai.core import registry

    state, card = registry.load_tensors(name)
    # load_tensors is cached: pop the bank from a copy, or the next load finds no bank.
    state = dict(state)
    nominal, grid, kwargs = card_config(card.config)
    model = CVAE(CVAEConfig(**kwargs))
    bank = {k.split(".", 1)[1]: state.pop(k).numpy().astype(float) for k in list(state) if k.startswith("bank.")}
    model.load_state_dict(state)
    model.eval()
    return Generator(model, nominal, name, card.sha256, grid, bank.get("mu"), bank.get("logvar"), bank.get("cond"),
                     bank.get("v_start"), bank.get("top"))


def with_bank(gen: Generator, curves: CurveSet) -> Generator:
    """``gen`` with a latent bank built from ``curves`` (normally its training curves)."""
    import torch

    with torch.no_grad():
        x = torch.tensor(shape(curves), dtype=torch.float32)
        c = torch.tensor(curves.conditions(), dtype=torch.float32)
        mu, logvar = gen.model.encode(x, c)
    return dataclasses.replace(gen, bank_mu=mu.numpy().astype(float), bank_logvar=logvar.numpy().astype(float),
                               bank_cond=curves.conditions(), bank_v_start=curves.v_start.astype(float),
                               bank_top=shape(curves)[:, 0])


def _bank_draw(gen: Generator, cond: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Latent points for ``cond`` from the bank, and the bank row each came from."""
    ops = gen.bank_cond[:, 1:] / COND_SCALE
    z = np.empty((len(cond), gen.bank_mu.shape[1]))
    src = np.empty(len(cond), dtype=int)
    wanted, which = np.unique(cond[:, 1:] / COND_SCALE, axis=0, return_inverse=True)
    for u, c in enumerate(wanted):
        rows = np.flatnonzero(which.ravel() == u)
        d = ((ops - c) ** 2).sum(axis=1)
        j = rng.choice(np.flatnonzero(d <= d.min() + 1e-9), size=rows.size)
        z[rows] = gen.bank_mu[j] + np.exp(0.5 * gen.bank_logvar[j]) * rng.standard_normal((rows.size, z.shape[1]))
        src[rows] = j
    return z, src


def check_conditions(conditions: np.ndarray) -> np.ndarray:
    """``conditions`` as float32 ``(n, 3)`` rows of (SOH, T, |I|); raises ValueError on what no generator takes."""
    cond = np.atleast_2d(np.asarray(conditions, dtype=np.float32))
    if cond.ndim != 2 or cond.shape[1] != 3 or not np.isfinite(cond).all():
        raise ValueError(f"conditions must be finite (n, 3) rows of (SOH, T, |I|), got shape {cond.shape}")
    if np.any(cond[:, 0] <= 0) or np.any(cond[:, 0] > 1.3):
        raise ValueError("SOH must lie in (0, 1.3] (a fraction of nominal capacity)")
    cond[:, 2] = np.abs(cond[:, 2])
    return cond


def sample(gen: Generator, conditions: np.ndarray, seed: int = 0, z: np.ndarray | None = None,
           nominal_ah: float | None = None, z_source: str = "bank") -> CurveSet:
    """Generate one curve per row of ``conditions`` = (SOH, temperature C, current A).

    Parameters
    ----------
    gen : Generator
    conditions : ndarray, shape (n, 3)
    seed : int
        Seeds the latent draws, so the same call gives the same curves.
    z : ndarray, shape (n, latent), optional
        Decode these latent points instead of drawing them (latent-space exploration).
    nominal_ah : float, optional
        Nominal capacity of the curves to make (default: the training data's). The model works
        on curve shapes, so SOH x nominal sets the capacity of each curve.
    z_source : {"bank", "prior"}
        Where latent points come from (see the module docstring); "bank" falls back to "prior"
        when the generator has no bank.

    Returns
    -------
    CurveSet
        ``cell_id`` is ``"synthetic"``; ``q`` in Ah.
    """
    import torch

    cond = check_conditions(conditions)
    if z_source not in ("bank", "prior"):
        raise ValueError(f"z_source must be 'bank' or 'prior', got {z_source!r}")
    n = cond.shape[0]
    nominal = gen.nominal_ah if nominal_ah is None else float(nominal_ah)
    latent = gen.model.config.latent
    src = None  # bank rows the latent points came from
    if z is not None:
        zn = np.atleast_2d(np.asarray(z, dtype=float))
        if zn.shape != (n, latent):
            raise ValueError(f"z must have shape {(n, latent)}, got {zn.shape}")
    elif z_source == "bank" and gen.bank_mu is not None:
        zn, src = _bank_draw(gen, cond.astype(float), np.random.default_rng(seed))
    else:
        zn = np.random.default_rng(seed).standard_normal((n, latent))
    with torch.no_grad():
        x = gen.model.decode(torch.tensor(zn, dtype=torch.float32), torch.from_numpy(cond)).numpy().astype(float)
    v_start = np.full(n, float(gen.grid[0]))
    if src is not None and gen.bank_v_start is not None:
        v_start = gen.bank_v_start[src]
        x = render(x, v_start, gen.grid, gen.bank_top[src])
    return CurveSet(x * (cond[:, :1] * nominal), cond[:, 0].astype(float), cond[:, 1].astype(float),
                    cond[:, 2].astype(float), np.array(["synthetic"] * n), np.arange(n), v_start, nominal, gen.grid)


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
