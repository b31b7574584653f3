"""The curve generators behind one API: train, load and sample a cVAE or a diffusion model by kind.

Also the nearest-curve jitter baseline they are benchmarked against, and the rule that picks the
page's default generator from the numbers ``python -m battgai.bench health --part generators``
writes into the model cards.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.preprocess import CurveSet

KINDS = ("cvae", "diffusion")
NAMES = {"cvae": "health_cvae", "diffusion": "health_diffusion"}
#: Training steps per kind when a generator is retrained inside an experiment (~5 s and ~35 s).
STEPS = {"cvae": 1500, "diffusion": 10000}
#: Default rule: realism first, as long as the curves still train an estimator nearly as well as real
#: ones; a realism gap this small is noise between runs, and then the cVAE (seconds to retrain,
#: a 2D latent map on the page) is kept.
MAX_TSTR_RATIO, REALISM_TIE = 1.3, 0.02


def kind_of(gen) -> str:
    from battgai.health.generation.diffusion_sample import DiffusionGenerator

    return "diffusion" if isinstance(gen, DiffusionGenerator) else "cvae"


def train(kind: str, curves: CurveSet, steps: int | None = None, seed: int = 0):
    """A generator of ``kind`` fitted to ``curves`` only."""
    if kind == "cvae":
        from battgai.health.generation.cvae_train import TrainConfig, train_cvae

        return train_cvae(curves, train=TrainConfig(steps=steps or STEPS[kind], seed=seed))
    if kind == "diffusion":
        from battgai.health.generation.diffusion_train import DiffusionTrainConfig, train_diffusion

        return train_diffusion(curves, train=DiffusionTrainConfig(steps=steps or STEPS[kind], seed=seed))
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def load(kind: str):
    """The bundled generator of ``kind`` (weights checked against their card)."""
    if kind == "cvae":
        from battgai.health.generation.sample import load as load_cvae

        return load_cvae()
    if kind == "diffusion":
        from battgai.health.generation.diffusion_sample import load as load_diffusion

        return load_diffusion()
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def sample(gen, conditions: np.ndarray, seed: int = 0, nominal_ah: float | None = None) -> CurveSet:
    """One curve per row of (SOH, T C, |I| A), whichever generator ``gen`` is (see each module)."""
    if isinstance(gen, JitterBaseline):
        return gen.sample(conditions, seed, nominal_ah)
    if kind_of(gen) == "diffusion":
        from battgai.health.generation.diffusion_sample import sample as sample_diffusion

        return sample_diffusion(gen, conditions, seed=seed, nominal_ah=nominal_ah)
    from battgai.health.generation.sample import sample as sample_cvae

    return sample_cvae(gen, conditions, seed=seed, nominal_ah=nominal_ah)


@dataclasses.dataclass
class JitterBaseline:
    """Baseline generator: the nearest real training curve (SOH, T, |I|), rescaled to the asked SOH, plus noise.

    Noise is ``sigma`` x nominal, Gaussian, kept monotone, as the jitter augmentation of
    :func:`battgai.health.estimation.experiment.jitter`.
    """

    train: CurveSet
    sigma: float = 0.01
    #: Distances in (SOH, C, A) are compared on these scales.
    scale: tuple[float, float, float] = (0.02, 20.0, 4.0)

    def sample(self, conditions: np.ndarray, seed: int = 0, nominal_ah: float | None = None) -> CurveSet:
        from battgai.health.generation.sample import check_conditions, shape

        cond = check_conditions(conditions).astype(float)
        nominal = self.train.nominal_ah if nominal_ah is None else float(nominal_ah)
        sc = np.asarray(self.scale)
        d = (((cond[:, None, :] - self.train.conditions()[None]) / sc) ** 2).sum(axis=2)
        j = d.argmin(axis=1)
        rng = np.random.default_rng(seed)
        q = shape(self.train)[j] * cond[:, :1] * nominal
        q = q + rng.normal(0.0, self.sigma * nominal, q.shape)
        q = np.maximum.accumulate(np.clip(q, 0.0, None), axis=1)
        n = len(cond)
        return CurveSet(q, cond[:, 0], cond[:, 1], cond[:, 2], np.array(["synthetic"] * n), np.arange(n),
                        self.train.v_start[j], nominal, self.train.grid)


def pick(metrics: dict[str, dict[str, float]]) -> tuple[str, str]:
    """The default generator kind and why, from each kind's ``discriminative_score`` and ``tstr_over_trtr``.

    Rule: among kinds with TSTR / TRTR <= :data:`MAX_TSTR_RATIO`, the lowest whole-curve
    discriminative score; within :data:`REALISM_TIE` of the cVAE's, the cVAE. With no kind
    passing the TSTR bar, the lowest TSTR / TRTR.
    """
    ok = [k for k in KINDS if k in metrics and metrics[k]["tstr_over_trtr"] <= MAX_TSTR_RATIO]
    if not ok:
        best = min((k for k in KINDS if k in metrics), key=lambda k: metrics[k]["tstr_over_trtr"])
        return best, f"no generator has TSTR / TRTR <= {MAX_TSTR_RATIO}: the lowest ratio"
    best = min(ok, key=lambda k: metrics[k]["discriminative_score"])
    if "cvae" in ok and metrics["cvae"]["discriminative_score"] <= metrics[best]["discriminative_score"] + REALISM_TIE:
        best = "cvae"
    why = (f"lowest whole-curve discriminative score among generators with TSTR / TRTR <= {MAX_TSTR_RATIO} "
           f"(cVAE kept within {REALISM_TIE})")
    return best, why


def default_kind() -> str:
    """The bench's pick from the bundled cards' metrics; the cVAE when a card is missing."""
    from battgai.core import registry

    metrics = {}
    for kind, name in NAMES.items():
        try:
            m = registry.load_card(name).metrics
        except registry.ModelNotFound:
            continue
        if {"discriminative_score", "tstr_over_trtr"} <= set(m):
            metrics[kind] = m
    return pick(metrics)[0] if metrics else "cvae"
