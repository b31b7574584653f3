"""Per-cycle feature datasets (four labs): synthetic feature / capacity trajectories and their use.

The MIT, HUST, XJTU and TJU sets hold, per cycle, 16 statistics of the charging curve and the
measured capacity (no curves; see each SOURCE.md). A conditional VAE (the same class as the curve
generator, with a Gaussian decoder) models a standardised feature row given SOH. A synthetic
trajectory takes the SOH path of a real training cell, stretched by a random fade-rate factor,
and decodes every cycle with one latent point held fixed along the path (drawn from the
posterior of a row of that cell), so the cell keeps its "style" while it ages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

FEATURES = (
    "cc_voltage_mean", "cc_voltage_std", "cc_voltage_kurtosis", "cc_voltage_skewness", "cc_q",
    "cc_charge_time", "cc_voltage_slope", "cc_voltage_entropy", "cv_current_mean", "cv_current_std",
    "cv_current_kurtosis", "cv_current_skewness", "cv_q", "cv_charge_time", "cv_current_slope",
    "cv_current_entropy",
)
LABS = {"mit": "mit_severson_features", "hust": "hust_features", "xjtu": "xjtu_features", "tju": "tju_features"}


@dataclasses.dataclass
class FeatureSet:
    """Per-cycle feature rows of one or more cells with SOH labels."""

    x: np.ndarray  # (n, 16) raw features
    soh: np.ndarray
    cell_id: np.ndarray
    cycle: np.ndarray
    lab: str

    def __len__(self) -> int:
        return len(self.soh)

    def subset(self, mask: np.ndarray) -> FeatureSet:
        return FeatureSet(self.x[mask], self.soh[mask], self.cell_id[mask], self.cycle[mask], self.lab)

    @classmethod
    def concat(cls, sets: list[FeatureSet]) -> FeatureSet:
        return cls(*(np.concatenate([getattr(s, f) for s in sets]) for f in ("x", "soh", "cell_id", "cycle")),
                   sets[0].lab)


def load_features(lab: str, every: int = 5) -> FeatureSet:
    """Every ``every``-th cycle of each cell of ``lab`` (one of :data:`LABS`); SOH = capacity / nominal.

    Raises ``battgai.core.data.DataNotFound`` when the data is absent.
    """
    import pandas as pd

    from battgai.core.data import dataset_path

    if lab not in LABS:
        raise ValueError(f"lab must be one of {sorted(LABS)}, got {lab!r}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    folder = dataset_path("cycling_features") / LABS[lab]
    df = pd.read_csv(folder / "features.csv.gz")
    nominal = pd.read_csv(folder / "cells.csv").set_index("cell")["nominal_capacity_ah"]
    df = df[(df["cycle_order"] - 1) % every == 0]
    df = df[np.isfinite(df[list(FEATURES)]).all(axis=1) & np.isfinite(df["capacity_ah"])]
    soh = df["capacity_ah"].to_numpy() / df["cell"].map(nominal).to_numpy()
    return FeatureSet(df[list(FEATURES)].to_numpy(float), soh, df["cell"].to_numpy(str),
                      df["cycle_order"].to_numpy(int), lab)


@dataclasses.dataclass
class Scaler:
    """Standardisation fitted on training rows (robust to the heavy tails of kurtosis features)."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        q25, q50, q75 = np.percentile(x, [25, 50, 75], axis=0)
        return cls(q50, np.maximum((q75 - q25) / 1.349, 1e-9))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # Clipped so one outlier row cannot dominate a small training set.
        return np.clip((x - self.center) / self.scale, -8.0, 8.0)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.scale + self.center


@dataclasses.dataclass
class TrajectoryGenerator:
    model: object  # battgai.health.generation.model.CVAE with monotone=False
    scaler: Scaler
    train: FeatureSet
    bank_mu: np.ndarray
    bank_logvar: np.ndarray


def train_generator(fs: FeatureSet, steps: int = 1000, seed: int = 0) -> TrajectoryGenerator:
    """Fit the feature CVAE (conditioned on SOH) to ``fs``; seconds on one CPU thread."""
    import torch

    from battgai.health.generation.cvae_train import TrainConfig, fit_cvae
    from battgai.health.generation.model import CVAEConfig

    if len(fs) < 4:
        raise ValueError(f"need at least 4 feature rows, got {len(fs)}")
    scaler = Scaler.fit(fs.x)
    x = scaler(fs.x)
    # sigma 0.3 in standardised units: rows are noisy per cycle; a tighter likelihood makes the
    # latent memorise cycles instead of cell style.
    config = CVAEConfig(latent=4, sigma=0.3, monotone=False)
    model = fit_cvae(x, fs.soh[:, None], config, TrainConfig(steps=steps, seed=seed), np.array([0.02]))
    with torch.no_grad():
        mu, logvar = model.encode(torch.tensor(x, dtype=torch.float32),
                                  torch.tensor(fs.soh[:, None], dtype=torch.float32))
    return TrajectoryGenerator(model, scaler, fs, mu.numpy().astype(float), logvar.numpy().astype(float))


def sample_trajectories(gen: TrajectoryGenerator, n: int, seed: int = 0,
                        fade_range: tuple[float, float] = (0.8, 1.25)) -> FeatureSet:
    """``n`` synthetic cells: a training cell's SOH path with its fade scaled, decoded with one latent."""
    import torch

    rng = np.random.default_rng(seed)
    cells = np.unique(gen.train.cell_id)
    out = []
    for k in range(n):
        rows = np.flatnonzero(gen.train.cell_id == rng.choice(cells))
        soh = 1.0 - (1.0 - gen.train.soh[rows]) * rng.uniform(*fade_range)
        j = rng.choice(rows)
        z = gen.bank_mu[j] + np.exp(0.5 * gen.bank_logvar[j]) * rng.standard_normal(gen.bank_mu.shape[1])
        with torch.no_grad():
            zs = torch.tensor(np.tile(z, (len(rows), 1)), dtype=torch.float32)
            xs = gen.model.decode(zs, torch.tensor(soh[:, None], dtype=torch.float32)).numpy().astype(float)
        out.append(FeatureSet(gen.scaler.inverse(xs), soh, np.array([f"synthetic-{k}"] * len(rows)),
                              gen.train.cycle[rows], gen.train.lab))
    return FeatureSet.concat(out)


def _ridge_rmse(train: FeatureSet, test: FeatureSet, alpha: float = 1.0) -> float:
    from sklearn.linear_model import Ridge

    from battgai.health.estimation.estimator import rmse_points

    scaler = Scaler.fit(train.x)
    model = Ridge(alpha=alpha).fit(scaler(train.x), train.soh)
    return rmse_points(test.soh, model.predict(scaler(test.x)))


def _jitter(fs: FeatureSet, rng: np.random.Generator, sigma: float = 0.1) -> FeatureSet:
    scale = Scaler.fit(fs.x).scale
    return FeatureSet(fs.x + rng.normal(0, sigma, fs.x.shape) * scale, fs.soh, fs.cell_id, fs.cycle, fs.lab)


def _mixup(fs: FeatureSet, rng: np.random.Generator, alpha: float = 0.4) -> FeatureSet:
    a, b = rng.integers(0, len(fs), len(fs)), rng.integers(0, len(fs), len(fs))
    lam = rng.beta(alpha, alpha, len(fs))
    return FeatureSet(lam[:, None] * fs.x[a] + (1 - lam[:, None]) * fs.x[b], lam * fs.soh[a] + (1 - lam) * fs.soh[b],
                      np.array(["mixup"] * len(fs)), fs.cycle[a], fs.lab)


@dataclasses.dataclass
class FeatureExperiment:
    """RMSE (SOH points) per arm and run, low-data within one lab; plus transfer to another lab."""

    lab: str
    rmse: dict[str, list[float]]
    transfer_lab: str | None = None
    transfer: dict[str, float] | None = None

    def summary(self) -> dict[str, tuple[float, float]]:
        return {arm: (float(np.mean(v)), float(np.std(v))) for arm, v in self.rmse.items()}


def feature_experiment(fs: FeatureSet, n_train_cells: int = 2, n_splits: int = 6, seeds: tuple[int, ...] = (0,),
                       steps: int = 800, other: FeatureSet | None = None,
                       progress: Callable[[float], None] | None = None) -> FeatureExperiment:
    """Ridge on per-cycle features trained on ``n_train_cells`` cells (+ each augmentation), tested on the rest.

    With ``other``, also trains on every cell of ``fs`` (with and without synthetic trajectories
    from a generator trained on ``fs``) and tests on every cell of ``other`` (transfer across labs).
    Augmentations add as many rows as the real training set.
    """
    cells = np.unique(fs.cell_id)
    if len(cells) <= n_train_cells:
        raise ValueError(f"need more than {n_train_cells} cells, got {len(cells)}")
    rng = np.random.default_rng(4321)
    arms = ("real only", "+ jitter", "+ mixup", "+ cVAE")
    rmse: dict[str, list[float]] = {a: [] for a in arms}
    runs = [(tuple(rng.choice(cells, n_train_cells, replace=False)), s) for _ in range(n_splits) for s in seeds]
    for r, (split, seed) in enumerate(runs):
        tr = np.isin(fs.cell_id, split)
        train, test = fs.subset(tr), fs.subset(~tr)
        arng = np.random.default_rng(seed)
        syn = sample_trajectories(train_generator(train, steps, seed), 2 * n_train_cells, seed)
        syn = syn.subset(arng.permutation(len(syn))[: len(train)])
        sets = {"real only": train, "+ jitter": FeatureSet.concat([train, _jitter(train, arng)]),
                "+ mixup": FeatureSet.concat([train, _mixup(train, arng)]),
                "+ cVAE": FeatureSet.concat([train, syn])}
        for arm, data in sets.items():
            rmse[arm].append(_ridge_rmse(data, test))
        if progress is not None:
            progress((r + 1) / len(runs))
    result = FeatureExperiment(fs.lab, rmse)
    if other is not None:
        syn = sample_trajectories(train_generator(fs, steps, 0), len(cells), 0)
        result.transfer_lab = other.lab
        result.transfer = {"real only": _ridge_rmse(fs, other),
                           "+ cVAE": _ridge_rmse(FeatureSet.concat([fs, syn.subset(np.arange(min(len(syn), len(fs))))]),
                                                 other)}
    return result
