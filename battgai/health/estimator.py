"""SOH from a partial discharge window: ridge and gradient boosting on hand-made features, and an MLP.

Estimators never see the whole curve (its end gives the capacity by coulomb counting, see
DESIGN.md): they see the charge delivered inside the window ``WINDOW_V`` (3.9 -> 3.5 V) at the
grid voltages, plus the discharge current and temperature, as field data would arrive.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from battgai.health.preprocess import VOLTAGE_GRID, CurveSet, window

ESTIMATORS = ("ridge", "gbm", "mlp")


def window_features(q: np.ndarray, temperature_c: np.ndarray, current_a: np.ndarray,
                    grid: np.ndarray = VOLTAGE_GRID) -> np.ndarray:
    """Hand-made window features: charge in the window and in its four 100 mV sub-windows, T, |I|.

    Charge between voltage thresholds is the classic partial-discharge health indicator; the
    sub-windows carry the shape of the incremental-capacity peaks inside the window. Conditions
    get a fixed physical scaling, ``(T - 25) / 20`` and ``|I| / 4``, not one fitted on the training
    cells: two cells cycled at one temperature and current show almost no spread, and a fitted
    scaling would turn another cell's conditions into values hundreds of deviations out.

    References
    ----------
    Severson et al., "Data-driven prediction of battery cycle life before capacity degradation",
    Nature Energy 4, 383 (2019) (voltage-window features); DESIGN.md (window 3.9 -> 3.5 V).
    """
    w = window(q, grid)
    total = w[:, -1]
    edges = np.linspace(0, w.shape[1] - 1, 5).round().astype(int)
    sub = np.diff(w[:, edges], axis=1)
    temp = (np.asarray(temperature_c, float) - 25.0) / 20.0
    return np.column_stack([total, sub, temp, np.abs(np.asarray(current_a, float)) / 4.0])


class Estimator(Protocol):
    def fit(self, curves: CurveSet) -> Estimator: ...
    def predict(self, curves: CurveSet) -> np.ndarray: ...


@dataclasses.dataclass
class FeatureEstimator:
    """Ridge or gradient boosting on :func:`window_features` (predicts SOH as a fraction).

    Ridge drops a condition column (temperature, current) whose spread over the training curves
    is below ``min_spread`` (scaled units: 2 C, 0.2 A): a linear model cannot learn the effect of
    a condition its training data hold constant, and with a tiny fitted spread the coefficient
    would be arbitrary and blow up on cells run at other conditions.
    """

    kind: str = "ridge"
    seed: int = 0
    min_spread: float = 0.05
    alpha: float = 0.1

    def __post_init__(self) -> None:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.linear_model import Ridge

        if self.kind == "ridge":
            # Features are on fixed scales (see window_features), so one alpha fits every training set.
            # Not tuned by leave-one-row-out CV: neighbouring cycles of one cell make that CV pick
            # almost no shrinkage, which then transfers badly to other cells.
            self.model = Ridge(alpha=self.alpha)
        elif self.kind == "gbm":
            self.model = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05,
                                                   subsample=0.8, random_state=self.seed)
        else:
            raise ValueError(f"kind must be 'ridge' or 'gbm', got {self.kind!r}")

    def _x(self, c: CurveSet) -> np.ndarray:
        x = window_features(c.q / c.nominal_ah, c.temperature_c, c.current_a, c.grid)
        return x[:, self.columns_] if hasattr(self, "columns_") else x

    def fit(self, curves: CurveSet) -> FeatureEstimator:
        x = window_features(curves.q / curves.nominal_ah, curves.temperature_c, curves.current_a, curves.grid)
        self.columns_ = np.ones(x.shape[1], bool)
        if self.kind == "ridge":
            self.columns_[-2:] = np.ptp(x[:, -2:], axis=0) >= self.min_spread
        self.model.fit(x[:, self.columns_], curves.soh)
        return self

    def predict(self, curves: CurveSet) -> np.ndarray:
        return self.model.predict(self._x(curves))


@dataclasses.dataclass
class MLPConfig:
    n_in: int = 19  # window points (17 on the default grid) + temperature + current
    hidden: int = 64
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4


def mlp_inputs(curves: CurveSet) -> np.ndarray:
    """MLP input: the window (fraction of nominal) and scaled conditions."""
    w = window(curves.q / curves.nominal_ah, curves.grid)
    return np.column_stack([w * 4.0, (curves.temperature_c - 25.0) / 20.0, curves.current_a / 4.0 - 0.5])


def build_mlp(cfg: MLPConfig):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(cfg.n_in, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden),
                         nn.SiLU(), nn.Linear(cfg.hidden, 1))


@dataclasses.dataclass
class MLPEstimator:
    """A small MLP on the raw window; full-batch Adam, a few seconds on one CPU thread."""

    config: MLPConfig = dataclasses.field(default_factory=MLPConfig)
    seed: int = 0

    def fit(self, curves: CurveSet) -> MLPEstimator:
        import torch

        from battgai.health.model import single_thread

        torch.manual_seed(self.seed)
        x = torch.tensor(mlp_inputs(curves), dtype=torch.float32)
        y = torch.tensor(curves.soh, dtype=torch.float32)[:, None]
        self.config = dataclasses.replace(self.config, n_in=x.shape[1])
        self.net = build_mlp(self.config)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.config.lr,
                                weight_decay=self.config.weight_decay)
        with single_thread():
            for _ in range(self.config.epochs):
                opt.zero_grad()
                loss = torch.mean((self.net(x) - y) ** 2)
                loss.backward()
                opt.step()
        return self

    def predict(self, curves: CurveSet) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.tensor(mlp_inputs(curves), dtype=torch.float32)
            return self.net(x)[:, 0].numpy().astype(float)


def load_mlp(name: str = "health_soh_mlp") -> MLPEstimator:
    """The bundled MLP SOH estimator, rebuilt from its card's config and verified weights."""
    from battgai import registry

    state, card = registry.load_tensors(name)
    est = MLPEstimator(MLPConfig(**card.config))
    est.net = build_mlp(est.config)
    est.net.load_state_dict(state)
    est.net.eval()
    return est


def make_estimator(kind: str, seed: int = 0) -> Estimator:
    """``"ridge"``, ``"gbm"`` or ``"mlp"``."""
    if kind == "mlp":
        return MLPEstimator(seed=seed)
    if kind in ("ridge", "gbm"):
        return FeatureEstimator(kind, seed)
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {kind!r}")


def rmse_points(soh_true: np.ndarray, soh_pred: np.ndarray) -> float:
    """Root-mean-square error in SOH percentage points."""
    soh_true, soh_pred = np.asarray(soh_true, float), np.asarray(soh_pred, float)
    if soh_true.shape != soh_pred.shape or soh_true.size == 0:
        raise ValueError(f"need equal, non-empty shapes, got {soh_true.shape} and {soh_pred.shape}")
    return float(np.sqrt(np.mean((soh_true - soh_pred) ** 2)) * 100.0)
