"""The leave-cells-out augmentation experiment and synthetic-data quality scores.

Every number here is measured on real cells that neither the estimator nor the generator saw:
in each split the generator is retrained on the training cells only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from battgai.health.estimation.estimator import make_estimator, rmse_points
from battgai.health.preprocess import CurveSet, window

ARMS = ("real only", "+ jitter", "+ mixup", "+ cVAE")
#: The arm a run with ``diffusion=True`` adds (retrains a diffusion model per run: ~35 s each).
DIFFUSION_ARM = "+ diffusion"


@dataclasses.dataclass
class LocoResult:
    """Leave-one-cell-out RMSE (SOH points) per held-out cell, pooled over curves and mean over cells."""

    per_cell: dict[str, float]
    pooled_rmse: float
    per_cell_bias: dict[str, float] = dataclasses.field(default_factory=dict)  # mean prediction - label, points

    @property
    def mean_rmse(self) -> float:
        return float(np.mean(list(self.per_cell.values())))


def loco(curves: CurveSet, kinds: tuple[str, ...] = ("ridge", "gbm", "mlp"), seed: int = 0,
         progress: Callable[[float], None] | None = None) -> dict[str, LocoResult]:
    """Leave-one-cell-out SOH RMSE for each estimator kind on real curves."""
    cells = np.unique(curves.cell_id)
    if len(cells) < 2:
        raise ValueError("leave-one-cell-out needs at least 2 cells")
    out = {}
    for j, kind in enumerate(kinds):
        pred, per, bias = np.zeros(len(curves)), {}, {}
        for k, cell in enumerate(cells):
            te = curves.cell_id == cell
            pred[te] = make_estimator(kind, seed).fit(curves.subset(~te)).predict(curves.subset(te))
            per[str(cell)] = rmse_points(curves.soh[te], pred[te])
            bias[str(cell)] = float(np.mean(pred[te] - curves.soh[te]) * 100.0)
            if progress is not None:
                progress((j * len(cells) + k + 1) / (len(kinds) * len(cells)))
        out[kind] = LocoResult(per, rmse_points(curves.soh, pred), bias)
    return out


def jitter(train: CurveSet, n: int, rng: np.random.Generator, sigma: float = 0.01) -> CurveSet:
    """Noise-jitter baseline: real curves plus Gaussian noise (``sigma`` x nominal), kept monotone."""
    idx = rng.integers(0, len(train), n)
    aug = train.subset(idx)
    q = aug.q + rng.normal(0.0, sigma * train.nominal_ah, aug.q.shape)
    aug.q = np.maximum.accumulate(np.clip(q, 0.0, None), axis=1)
    return aug


def mixup(train: CurveSet, n: int, rng: np.random.Generator, alpha: float = 0.4) -> CurveSet:
    """Mixup baseline: convex mixtures of two real curves and of their labels and conditions.

    References
    ----------
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    """
    a, b = train.subset(rng.integers(0, len(train), n)), train.subset(rng.integers(0, len(train), n))
    lam = rng.beta(alpha, alpha, n)
    mix = a.subset(np.arange(n))
    for f in ("q", "soh", "temperature_c", "current_a"):
        va, vb = getattr(a, f), getattr(b, f)
        lw = lam[:, None] if va.ndim == 2 else lam
        setattr(mix, f, lw * va + (1 - lw) * vb)
    mix.cell_id = np.array(["mixup"] * n)
    return mix


def synthetic_conditions(train: CurveSet, n: int, rng: np.random.Generator, extend: float = 0.05,
                         soh_min: float | None = None) -> np.ndarray:
    """Conditions for synthetic curves: SOH uniform over the training range widened by ``extend``
    (clipped to 0.5..1.05; ``soh_min`` replaces the lower end), with the temperature and current
    of a random training curve."""
    lo = max(0.5, train.soh.min() - extend) if soh_min is None else soh_min
    hi = min(1.05, train.soh.max() + extend)
    idx = rng.integers(0, len(train), n)
    return np.column_stack([rng.uniform(lo, hi, n), train.temperature_c[idx], train.current_a[idx]])


def cvae_augment(train: CurveSet, n: int, seed: int, steps: int = 1000, soh_min: float | None = None) -> CurveSet:
    """Synthetic curves from a CVAE trained on ``train`` only (see :func:`synthetic_conditions`)."""
    from battgai.health.generation.cvae_train import TrainConfig, train_cvae
    from battgai.health.generation.sample import sample

    gen = train_cvae(train, train=TrainConfig(steps=steps, seed=seed))
    rng = np.random.default_rng(seed + 7919)
    return sample(gen, synthetic_conditions(train, n, rng, soh_min=soh_min), seed=seed)


def diffusion_augment(train: CurveSet, n: int, seed: int, soh_min: float | None = None) -> CurveSet:
    """Synthetic curves from a diffusion model trained on ``train`` only (same conditions as the cVAE's)."""
    from battgai.health.generation import generators

    gen = generators.train("diffusion", train, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    return generators.sample(gen, synthetic_conditions(train, n, rng, soh_min=soh_min), seed=seed)


def _arms(train: CurveSet, seed: int, ratio: float, steps: int, soh_min: float | None = None,
          diffusion: bool = False) -> dict[str, CurveSet]:
    """The training sets of one run: real only and real + each augmentation (same size)."""
    n = max(1, round(ratio * len(train)))
    rng = np.random.default_rng(seed)
    sets = {
        "real only": train,
        "+ jitter": CurveSet.concat([train, jitter(train, n, rng)]),
        "+ mixup": CurveSet.concat([train, mixup(train, n, rng)]),
        "+ cVAE": CurveSet.concat([train, cvae_augment(train, n, seed, steps, soh_min)]),
    }
    if diffusion:
        sets[DIFFUSION_ARM] = CurveSet.concat([train, diffusion_augment(train, n, seed, soh_min)])
    return sets


@dataclasses.dataclass
class AugmentationResult:
    """RMSE (SOH points) on held-out cells per run, for each estimator and arm."""

    rmse: dict[str, dict[str, list[float]]]  # estimator -> arm -> one value per (split, seed)
    splits: list[tuple[str, ...]]
    seeds: tuple[int, ...]
    n_train_cells: int
    ratio: float

    def summary(self, estimator: str) -> dict[str, tuple[float, float]]:
        """Arm -> (mean, std) over runs."""
        return {arm: (float(np.mean(v)), float(np.std(v))) for arm, v in self.rmse[estimator].items()}

    def relative_change(self, estimator: str, arm: str) -> float:
        """Mean relative change of RMSE against "real only" (negative = better), paired by run."""
        base = np.asarray(self.rmse[estimator]["real only"])
        return float(np.mean(np.asarray(self.rmse[estimator][arm]) / base - 1.0))

    def change_of_means(self, estimator: str, arm: str) -> float:
        """Mean RMSE of ``arm`` over mean RMSE of "real only", minus 1 (negative = better)."""
        return float(np.mean(self.rmse[estimator][arm]) / np.mean(self.rmse[estimator]["real only"]) - 1.0)


def augmentation_experiment(curves: CurveSet, n_train_cells: int = 2, n_splits: int = 8,
                            seeds: tuple[int, ...] = (0, 1), estimators: tuple[str, ...] = ("ridge",),
                            ratio: float = 1.0, steps: int = 1000,
                            progress: Callable[[float], None] | None = None) -> AugmentationResult:
    """Train on ``n_train_cells`` real cells with and without augmentation; test on all the others.

    Every arm of a run shares the split, the seed and the estimator; augmentations add
    ``ratio`` x (number of real training curves) curves. The CVAE is retrained per run on the
    training cells only, so no test cell leaks into the synthetic data.
    """
    cells = np.unique(curves.cell_id)
    if len(cells) <= n_train_cells:
        raise ValueError(f"need more than {n_train_cells} cells, got {len(cells)}")
    rng = np.random.default_rng(1234)
    splits: list[tuple[str, ...]] = []
    for _ in range(50 * n_splits):
        pick = tuple(sorted(rng.choice(cells, n_train_cells, replace=False).tolist()))
        if pick not in splits:
            splits.append(pick)
        if len(splits) == n_splits:
            break
    rmse = {e: {arm: [] for arm in ARMS} for e in estimators}
    total = len(splits) * len(seeds)
    for r, (split, seed) in enumerate((s, sd) for s in splits for sd in seeds):
        tr_mask = np.isin(curves.cell_id, split)
        train, test = curves.subset(tr_mask), curves.subset(~tr_mask)
        sets = _arms(train, seed, ratio, steps)
        for e in estimators:
            for arm, data in sets.items():
                rmse[e][arm].append(rmse_points(test.soh, make_estimator(e, seed).fit(data).predict(test)))
        if progress is not None:
            progress((r + 1) / total)
    return AugmentationResult(rmse, splits, tuple(seeds), n_train_cells, ratio)


def early_life_experiment(curves: CurveSet, frac: float = 0.3, soh_min: float = 0.6,
                          seeds: tuple[int, ...] = (0,), estimators: tuple[str, ...] = ("ridge",),
                          ratio: float = 1.0, steps: int = 1000,
                          progress: Callable[[float], None] | None = None,
                          diffusion: bool = False) -> AugmentationResult:
    """Low data by age: train on the first ``frac`` of every other cell's cycles, test on a held-out cell's whole life.

    Leave-one-cell-out. The estimator never sees a curve older than ``frac`` of a cell's life, so
    it must extrapolate to low SOH; the CVAE (trained on the same early-life curves) is asked for
    SOH uniform from ``soh_min`` (the end-of-life range a user wants covered, chosen without
    looking at any test label) to the training maximum. Jitter and mixup cannot leave the
    training range. ``splits`` of the result name the held-out cell of each run. ``diffusion``
    adds the :data:`DIFFUSION_ARM` (a diffusion model trained per run on the same curves).
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must lie in (0, 1), got {frac}")
    cells = np.unique(curves.cell_id)
    if len(cells) < 2:
        raise ValueError("need at least 2 cells")
    rank = np.zeros(len(curves))
    for cell in cells:
        m = curves.cell_id == cell
        rank[m] = np.argsort(np.argsort(curves.cycle[m])) / m.sum()
    early = rank < frac
    rmse = {e: {arm: [] for arm in ARMS + (DIFFUSION_ARM,) * diffusion} for e in estimators}
    runs = [(cell, seed) for cell in cells for seed in seeds]
    for r, (cell, seed) in enumerate(runs):
        test = curves.subset(curves.cell_id == cell)
        train = curves.subset((curves.cell_id != cell) & early)
        for e in estimators:
            for arm, data in _arms(train, seed, ratio, steps, soh_min, diffusion).items():
                rmse[e][arm].append(rmse_points(test.soh, make_estimator(e, seed).fit(data).predict(test)))
        if progress is not None:
            progress((r + 1) / len(runs))
    return AugmentationResult(rmse, [(str(c),) for c in cells], tuple(seeds), len(cells) - 1, ratio)


@dataclasses.dataclass
class QualityResult:
    """Synthetic-data quality over leave-one-cell-out folds (generator retrained per fold)."""

    tstr_rmse: float  # estimator trained on synthetic only, tested on the held-out real cell
    trtr_rmse: float  # same estimator trained on the real training cells
    full_aug_rmse: float  # real + synthetic training curves
    discriminative_score: float  # |accuracy - 0.5| real vs synthetic whole curves, grouped by cell
    discriminative_score_window: float  # the same on the 3.9 -> 3.5 V window the estimators see
    discriminative_score_prior: float  # whole curve, latent drawn from the N(0, I) prior instead of the bank
    discriminative_score_loaded: float  # grid voltages below every cohort curve's first loaded sample
    estimator: str

    @property
    def tstr_ratio(self) -> float:
        return self.tstr_rmse / self.trtr_rmse

    def metrics(self) -> dict[str, float]:
        out = {"tstr_rmse_soh_points": self.tstr_rmse, "trtr_rmse_soh_points": self.trtr_rmse,
               "tstr_over_trtr": self.tstr_ratio, "full_data_real_plus_synthetic_rmse": self.full_aug_rmse,
               "discriminative_score": self.discriminative_score,
               "discriminative_score_window": self.discriminative_score_window,
               "discriminative_score_prior_sampling": self.discriminative_score_prior,
               "discriminative_score_loaded_part": self.discriminative_score_loaded}
        # A score that does not apply to this generator (NaN) is left out: cards are strict JSON.
        return {k: v for k, v in out.items() if np.isfinite(v)}


def discriminative_score(real: np.ndarray, fake: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """|accuracy - 0.5| of a gradient-boosting classifier telling real from synthetic curves.

    5-fold cross-validation grouped by ``groups`` (the cell a curve belongs to, or whose
    conditions it was generated at), so the classifier is tested on cells it did not train on.
    0 means indistinguishable, 0.5 means perfectly separable.

    References
    ----------
    Yoon, Jarrett and van der Schaar, "Time-series Generative Adversarial Networks", NeurIPS 2019.
    """
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import GroupKFold, cross_val_score

    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {real.shape} and {fake.shape}")
    x = np.concatenate([real, fake])
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    g = np.r_[groups, groups]
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed)
    folds = min(5, len(np.unique(groups)))
    acc = cross_val_score(clf, x, y, groups=g, cv=GroupKFold(folds), scoring="accuracy").mean()
    return float(abs(acc - 0.5))


def generator_quality(all_curves: CurveSet, cohort: CurveSet, train_config=None, estimator: str = "ridge",
                      seed: int = 0, progress: Callable[[float], None] | None = None,
                      kind: str = "cvae", steps: int | None = None) -> QualityResult:
    """TSTR vs TRTR, real+synthetic, and the discriminative score, leave-one-cell-out over ``cohort``.

    For each held-out cohort cell the generator (``kind``: "cvae", "diffusion" or "jitter", the
    nearest-training-curve baseline) is retrained on ``all_curves`` without that cell; it then
    makes one synthetic curve at the conditions of every real training curve (for TSTR) and of
    every held-out curve (for the discriminative score; no held-out curve is copied).
    ``train_config`` (a cVAE :class:`~battgai.health.generation.cvae_train.TrainConfig`) or ``steps`` set the
    training length. The prior-sampling score is the cVAE's only (NaN for the others).
    """
    from battgai.health.generation import generators
    from battgai.health.generation.sample import sample, shape

    cells = np.unique(cohort.cell_id)
    truth, p_real, p_syn, p_aug = [], [], [], []
    fake_test, fake_prior = np.zeros_like(cohort.q), np.full_like(cohort.q, np.nan)
    for k, cell in enumerate(cells):
        te = cohort.cell_id == cell
        train, test = cohort.subset(~te), cohort.subset(te)
        rest = all_curves.subset(all_curves.cell_id != cell)
        if kind == "jitter":
            gen = generators.JitterBaseline(rest)
        elif kind == "cvae" and train_config is not None:
            from battgai.health.generation.cvae_train import train_cvae

            gen = train_cvae(rest, train=train_config)
        else:
            gen = generators.train(kind, rest, steps, seed)
        syn = generators.sample(gen, train.conditions(), seed=seed + k)
        truth.append(test.soh)
        p_real.append(make_estimator(estimator, seed).fit(train).predict(test))
        p_syn.append(make_estimator(estimator, seed).fit(syn).predict(test))
        p_aug.append(make_estimator(estimator, seed).fit(CurveSet.concat([train, syn])).predict(test))
        fake_test[te] = shape(generators.sample(gen, test.conditions(), seed=seed + 1000 + k))
        if kind == "cvae":
            fake_prior[te] = shape(sample(gen, test.conditions(), seed=seed + 1000 + k, z_source="prior"))
        if progress is not None:
            progress((k + 1) / len(cells))
    y = np.concatenate(truth)
    real_shape = shape(cohort)
    disc = discriminative_score(real_shape, fake_test, cohort.cell_id, seed)
    disc_w = discriminative_score(window(real_shape, cohort.grid), window(fake_test, cohort.grid),
                                  cohort.cell_id, seed)
    disc_p = discriminative_score(real_shape, fake_prior, cohort.cell_id, seed) if kind == "cvae" else float("nan")
    # Above a curve's first loaded sample, Q(V) is the charge of that first sampling interval (a
    # property of the cycler's clock, not of the cell); score the loaded part alone as well.
    loaded = cohort.grid < cohort.v_start.min()
    disc_l = discriminative_score(real_shape[:, loaded], fake_test[:, loaded], cohort.cell_id, seed)
    return QualityResult(rmse_points(y, np.concatenate(p_syn)), rmse_points(y, np.concatenate(p_real)),
                         rmse_points(y, np.concatenate(p_aug)), disc, disc_w, disc_p, disc_l, estimator)
