"""Transfer an SOH estimator to a researcher's own cells from a few labelled ones.

Nothing here assumes NASA's nominal capacity, voltage window, sampling period or a temperature
column. Each lab (a researcher's group of cells, or one NASA temperature / current group) gets
its own :class:`Frame`:

- capacity is expressed relative to ``c_ref``, the labelled cells' first-cycle capacity, so a
  1.1 Ah LFP cell and a 2 Ah NMC cell fade on the same scale;
- the voltage axis runs from the lab's typical first loaded voltage ``v_top`` to its cut-off
  ``v_bot``; the partial window an estimator sees is a fraction of that range (default 5 % to
  40 % of the way down, close to NASA's 3.9 -> 3.5 V at 2 A), not a fixed pair of voltages;
- the discharge current enters as a C-rate (|I| / ``c_ref``); temperature is not used.

The estimator is ridge regression with the feature augmentation of Daume (source copy, target
copy, target intercept), trained on the source labs plus the labelled cells, the labelled cells
weighted as much as all source curves together: the shared part carries what labs have in
common, the target part (with the intercept) corrects the lab's own bias and slope from the
labelled cells. An ensemble over bootstrap resamples of the training cells gives the spread of
the fit; the cell-to-cell scatter seen in training is added to it for the uncertainty. That sigma
is too narrow for a new lab's cells (2 sigma held 69 % of NASA leave-group-out errors), so
:func:`battgai.health.estimation.owncells.run` scales it on cells held out of the source labs.

References
----------
H. Daume III, "Frustratingly Easy Domain Adaptation", ACL 2007.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.health.preprocess import CurveSet

#: The estimator's window as fractions of the lab's loaded voltage range (top, bottom).
WINDOW_FRACTION = (0.05, 0.40)
#: Points on the relative voltage grid of every lab (the generator's curve length).
N_GRID = 61
#: Points inside the window at which the charge is read (8 increments).
N_WINDOW = 9
#: Fewest labelled cycles, and fewest with distinct capacities, before anything is fitted.
MIN_LABELLED_CYCLES = 5
#: A labelled cell whose first capacity is off the other labelled cells' median by more than this
#: fraction is refused (a wrong file, unit or nominal more likely than a real cell).
MAX_REF_SPREAD = 0.25
#: Tolerance (fraction of the voltage range) for a curve to count as reaching the window.
REACH_TOL = 0.01


class TransferError(ValueError):
    """Input the transfer cannot work with; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One lab's reference: voltage range under load and the capacity everything is relative to."""

    v_top: float
    v_bot: float
    c_ref: float
    window: tuple[float, float] = WINDOW_FRACTION

    @property
    def grid(self) -> np.ndarray:
        return np.linspace(self.v_top, self.v_bot, N_GRID)

    @property
    def window_v(self) -> tuple[float, float]:
        span = self.v_top - self.v_bot
        return self.v_top - self.window[0] * span, self.v_top - self.window[1] * span


def end_voltage(curves: CurveSet) -> np.ndarray:
    """Lowest grid voltage each curve reaches (below it, ``Q(V)`` stays flat at the total)."""
    rising = np.diff(curves.q, axis=1) > 1e-6 * np.maximum(curves.q[:, -1:], 1e-9)
    last = np.where(rising.any(axis=1), rising.shape[1] - np.argmax(rising[:, ::-1], axis=1), 0)
    return curves.grid[last]


def first_capacity(curves: CurveSet, cell: str, n: int = 3) -> float:
    """Mean capacity (Ah) of a cell's first ``n`` recorded cycles."""
    m = curves.cell_id == cell
    order = np.argsort(curves.cycle[m])[:n]
    return float(np.mean(curves.soh[m][order]) * curves.nominal_ah)


def fit_frame(curves: CurveSet, labelled: list[str], window: tuple[float, float] = WINDOW_FRACTION) -> Frame:
    """The lab's frame: voltage range from all its curves, ``c_ref`` from the labelled cells."""
    if not 0.0 <= window[0] < window[1] <= 1.0:
        raise TransferError(f"window fractions must satisfy 0 <= top < bottom <= 1, got {window}")
    c_ref = float(np.median([first_capacity(curves, c) for c in labelled]))
    return Frame(float(np.median(curves.v_start)), float(np.median(end_voltage(curves))), c_ref, tuple(window))


def reaches_window(curves: CurveSet, frame: Frame) -> np.ndarray:
    """Curves whose loaded voltage starts above the window and ends below it."""
    hi, lo = frame.window_v
    tol = REACH_TOL * (frame.v_top - frame.v_bot)
    return (curves.v_start >= hi - tol) & (end_voltage(curves) <= lo + tol)


def relative(curves: CurveSet, frame: Frame) -> CurveSet:
    """``curves`` on the lab's relative grid: charge and SOH over ``c_ref``, current as a C-rate."""
    q = np.array([np.interp(frame.grid, curves.grid[::-1], row[::-1]) for row in curves.q]).reshape(-1, N_GRID)
    q = q / frame.c_ref
    scale = curves.nominal_ah / frame.c_ref
    return CurveSet(q, curves.soh * scale, curves.temperature_c.copy(), np.abs(curves.current_a) / frame.c_ref,
                    curves.cell_id.copy(), curves.cycle.copy(), curves.v_start.copy(), 1.0, frame.grid,
                    curves.capacity_source.copy())


def features(rel: CurveSet, window: tuple[float, float] = WINDOW_FRACTION) -> np.ndarray:
    """Charge in the window and in its 8 sub-windows (over ``c_ref``), and the C-rate.

    Read by position on the relative grid, so curve sets of different labs (different voltages)
    concatenated together give comparable columns.
    """
    pos = np.linspace(window[0], window[1], N_WINDOW) * (rel.q.shape[1] - 1)
    idx = np.arange(rel.q.shape[1])
    w = np.array([np.interp(pos, idx, row) for row in rel.q]).reshape(-1, N_WINDOW)  # no curve: zero rows
    w = w - w[:, :1]
    return np.column_stack([w[:, -1], np.diff(w, axis=1), rel.current_a])


@dataclasses.dataclass
class TransferModel:
    """Ridge with Daume's feature augmentation and a bootstrap ensemble; targets are SOH / ``c_ref``.

    ``fit(None, ...)`` or an empty source trains on the labelled cells alone (same features).
    """

    alpha: float = 0.01
    n_boot: int = 20
    seed: int = 0

    def _design(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        if not self.augmented_:
            return x
        t = target.astype(float)[:, None]
        return np.column_stack([x, x * t, t])

    def _fit_one(self, x, y, is_target, w):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.alpha).fit(self._design(x, is_target), y, sample_weight=w)

    def fit(self, source: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
            target: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TransferModel:
        """``source`` / ``target``: (features, relative SOH, cell ids); target rows are the labelled cells."""
        xt, yt, ct = target
        self.augmented_ = source is not None and len(source[0]) > 0
        if self.augmented_:
            xs, ys, cs = source
            x, y, cells = np.vstack([xs, xt]), np.r_[ys, yt], np.r_[cs, ct]
            is_t = np.r_[np.zeros(len(xs), bool), np.ones(len(xt), bool)]
        else:
            x, y, cells, is_t = xt, yt, ct, np.ones(len(xt), bool)
        # Labelled cells weigh as much as all source curves together, or they would barely move the fit.
        w = np.where(is_t, max(1.0, (~is_t).sum() / max(is_t.sum(), 1)), 1.0)
        self.model_ = self._fit_one(x, y, is_t, w)
        rng = np.random.default_rng(self.seed)
        self.boot_ = []
        units = np.unique(cells)
        for _ in range(self.n_boot):
            # Resample whole cells (curves of one cell are not independent), keeping every labelled
            # cell so the target part stays defined; with one labelled cell its cycles are resampled.
            pick = rng.choice(units, len(units))
            rows = np.concatenate([np.flatnonzero(cells == u) for u in pick] +
                                  [np.flatnonzero(is_t)[rng.integers(0, is_t.sum(), is_t.sum())]])
            self.boot_.append(self._fit_one(x[rows], y[rows], is_t[rows], w[rows]))
        resid = y - self.model_.predict(self._design(x, is_t))
        offset = {u: resid[cells == u].mean() for u in units}
        # Between-cell scatter: offsets a new cell may carry that no feature in the window explains.
        self.between_ = float(np.sqrt(np.mean(np.square(list(offset.values())))))
        self.within_ = float(np.std(resid - np.array([offset[c] for c in cells])))
        self.lo_, self.hi_ = x[is_t].min(axis=0), x[is_t].max(axis=0)
        if self.augmented_:
            self.lo_, self.hi_ = np.minimum(self.lo_, xs.min(axis=0)), np.maximum(self.hi_, xs.max(axis=0))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Relative SOH, its 1-sigma uncertainty, and whether the row lies outside the training features."""
        on = np.ones(len(x), bool)
        mean = self.model_.predict(self._design(x, on))
        boot = np.array([m.predict(self._design(x, on)) for m in self.boot_])
        sigma = np.sqrt(boot.var(axis=0) + self.between_**2 + self.within_**2)
        return mean, sigma, outside(x, self.lo_, self.hi_)


def outside(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows of :func:`features` whose window charge or C-rate lies beyond ``lo`` / ``hi`` (the training
    rows' range) by more than 10 % of that range: an estimate there extrapolates."""
    margin = 0.1 * np.maximum(hi - lo, 1e-9)
    return ((x < lo - margin) | (x > hi + margin))[:, [0, -1]].any(axis=1)
