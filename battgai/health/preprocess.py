"""Discharge curves on one fixed grid, and the partial windows estimators see.

A discharge curve is represented as the charge delivered before the loaded voltage first falls
to each voltage of a fixed grid, ``Q(V)`` in Ah (:data:`VOLTAGE_GRID`, 4.2 -> 2.7 V in 25 mV
steps). This keeps the capacity on the curve (SOH is visible, unlike on a normalised-capacity
axis), is monotone by construction, and makes a partial voltage window (e.g. 3.9 -> 3.5 V) a
slice of the grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from battgai.health.schema import SCHEMA, CyclingData

#: Voltages (V, descending) at which every discharge curve is sampled.
VOLTAGE_GRID = np.round(np.linspace(4.2, 2.7, 61), 4)
#: The partial window estimators see (DESIGN.md): charge delivered between these voltages.
WINDOW_V = (3.9, 3.5)
CACHE_VERSION = 1

#: How model cards and benches name the NASA data.
NASA_DATA = ("NASA PCoE battery ageing set (Saha and Goebel 2007), shared data cycling/nasa_pcoe; "
             "cycles flagged by flag_outlier dropped")



def discharge_capacity_curve(time_s: np.ndarray, voltage_v: np.ndarray, current_a: np.ndarray,
                             grid: np.ndarray = VOLTAGE_GRID, min_current: float = 0.1) -> np.ndarray:
    """Charge delivered (Ah) before the loaded voltage first reaches each grid voltage.

    Parameters
    ----------
    time_s, voltage_v, current_a : ndarray
        One discharge record in time order; current negative for discharge.
    grid : ndarray
        Voltages in descending order.
    min_current : float
        Samples with ``-current_a`` below this (A) are rest or relaxation: they add no charge and
        their voltage is ignored (NASA records go on relaxing after the cut-off).

    Returns
    -------
    q : ndarray, shape ``grid.shape``
        Non-decreasing along the grid. Grid voltages above the first loaded sample get the charge
        at that sample; voltages below the last loaded sample get the total charge.

    Notes
    -----
    The charge is the trapezoidal integral of the discharge current over time (coulomb
    counting). The loaded voltage is replaced by its running minimum so that a curve with noise
    or a small recovery still maps to a single ``Q(V)``.

    Examples
    --------
    >>> t = np.arange(0, 3601, 60.0)
    >>> v = np.linspace(4.1, 2.6, t.size)
    >>> q = discharge_capacity_curve(t, v, -np.ones_like(t), grid=np.array([4.1, 3.35, 2.7]))
    >>> np.round(q, 3).tolist()
    [0.0, 0.5, 0.933]
    """
    t, v, i = (np.asarray(a, dtype=float) for a in (time_s, voltage_v, current_a))
    if not (t.shape == v.shape == i.shape) or t.ndim != 1:
        raise ValueError(f"time_s, voltage_v and current_a must be 1D and equal length, got "
                         f"{t.shape}, {v.shape}, {i.shape}")
    if not (np.isfinite(t).all() and np.isfinite(v).all() and np.isfinite(i).all()):
        raise ValueError("discharge record contains NaN or infinite values")
    if np.any(np.diff(t) < 0):
        raise ValueError("time_s must be non-decreasing within a discharge record")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or np.any(np.diff(grid) >= 0):
        raise ValueError("grid must be 1D and strictly descending")
    dis = np.clip(-i, 0.0, None)
    q = np.concatenate([[0.0], np.cumsum(0.5 * (dis[1:] + dis[:-1]) * np.diff(t))]) / 3600.0
    loaded = dis > min_current
    if loaded.sum() < 3:
        raise ValueError(f"fewer than 3 samples discharge at more than {min_current} A")
    q, env = q[loaded], np.minimum.accumulate(v[loaded])
    # First loaded sample at or below each grid voltage; interpolate with the one before it.
    idx = np.searchsorted(-env, -grid, side="left")
    out = np.empty_like(grid)
    first, last = idx == 0, idx >= env.size
    out[first], out[last] = q[0], q[-1]
    mid = ~(first | last)
    k = idx[mid]
    v0, v1 = env[k - 1], env[k]
    frac = np.where(v0 > v1, (v0 - grid[mid]) / np.where(v0 > v1, v0 - v1, 1.0), 1.0)
    out[mid] = q[k - 1] + frac * (q[k] - q[k - 1])
    return np.maximum.accumulate(out)


def render(x: np.ndarray, v_start: np.ndarray, grid: np.ndarray, top: np.ndarray | None = None) -> np.ndarray:
    """Generated curve shapes made to look like resampled records: flat above ``v_start``, non-decreasing, in [0, 1].

    A record resampled by :func:`discharge_capacity_curve` is flat above its first loaded
    voltage, at the charge of the first loaded sample (the rest-to-load step), never decreases,
    and ends at or below the labelled capacity (NASA curves end at 0.99-1.0 x capacity, never
    above); a generator's raw output has none of that exactly, and a classifier tells it apart
    on those columns alone.

    Parameters
    ----------
    x : ndarray, shape (n, len(grid))
        Sampled ``Q(V) / capacity``; column 0 (the top of the grid, above every loaded start)
        carries the charge of the first loaded sample.
    v_start : ndarray, shape (n,)
        Sampled first loaded voltage of each curve.
    grid : ndarray
        Descending voltages.
    top : ndarray, shape (n,), optional
        Charge of the first loaded sample (default: column 0 of ``x``).
    """
    x = np.clip(x, 0.0, 1.0)
    top = x[:, 0] if top is None else np.clip(np.asarray(top, float), 0.0, 1.0)
    above = grid[None, :] > v_start[:, None]
    x = np.where(above, top[:, None], x)
    return np.maximum.accumulate(x, axis=1)


@dataclasses.dataclass
class CurveSet:
    """Resampled discharge curves with their labels and conditions (one row per cycle)."""

    q: np.ndarray  # (n, len(grid)) Ah delivered before each grid voltage
    soh: np.ndarray
    temperature_c: np.ndarray
    current_a: np.ndarray  # discharge current magnitude (A)
    cell_id: np.ndarray
    cycle: np.ndarray
    v_start: np.ndarray  # first loaded voltage: a window above it was not observed
    nominal_ah: float
    grid: np.ndarray = dataclasses.field(default_factory=lambda: VOLTAGE_GRID.copy())
    #: Where each ``soh`` label comes from (:data:`battgai.health.schema.CAPACITY_SOURCES`); None: "file".
    capacity_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Curve sets saved before the field existed, and generated curves, carry labels given with them.
        if self.capacity_source is None:
            self.capacity_source = np.full(len(self.soh), "file")

    def __len__(self) -> int:
        return len(self.soh)

    def subset(self, mask: np.ndarray) -> CurveSet:
        return CurveSet(self.q[mask], self.soh[mask], self.temperature_c[mask], self.current_a[mask],
                        self.cell_id[mask], self.cycle[mask], self.v_start[mask], self.nominal_ah, self.grid,
                        self.capacity_source[mask])

    def conditions(self) -> np.ndarray:
        """``(n, 3)`` array of (SOH, temperature C, current A), the generator's conditions."""
        return np.stack([self.soh, self.temperature_c, self.current_a], axis=1)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: Path) -> CurveSet:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: (float(z[k]) if k == "nominal_ah" else z[k]) for k in z.files})

    @classmethod
    def concat(cls, sets: list[CurveSet]) -> CurveSet:
        return cls(*(np.concatenate([getattr(s, f) for s in sets]) for f in
                     ("q", "soh", "temperature_c", "current_a", "cell_id", "cycle", "v_start")),
                   sets[0].nominal_ah, sets[0].grid, np.concatenate([s.capacity_source for s in sets]))


def resample(data: CyclingData, grid: np.ndarray = VOLTAGE_GRID) -> CurveSet:
    """Every discharge cycle of ``data`` as a row of ``Q(V)`` on ``grid``; unusable cycles are skipped."""
    labels = data.cycles.set_index(["cell_id", "cycle"])
    rows, keys, v_start = [], [], []
    min_current = 0.05 * data.nominal_ah
    for (cell, cyc), g in data.samples.groupby(["cell_id", "cycle"], sort=True):
        if (cell, cyc) not in labels.index:
            continue
        try:
            rows.append(discharge_capacity_curve(g["time_s"].to_numpy(), g["voltage_v"].to_numpy(),
                                                 g["current_a"].to_numpy(), grid, min_current))
        except ValueError:
            continue  # too short a record to resample
        keys.append((cell, cyc))
        v_start.append(float(g["voltage_v"].to_numpy()[-g["current_a"].to_numpy() > min_current][0]))
    if not rows:
        raise ValueError("no discharge cycle could be resampled")
    lab = labels.loc[keys]
    source = lab["capacity_source"].to_numpy(str) if "capacity_source" in lab else None
    return CurveSet(np.stack(rows), lab["soh"].to_numpy(float), lab["temperature_c"].to_numpy(float),
                    np.abs(lab["current_a"].to_numpy(float)), np.array([k[0] for k in keys]),
                    np.array([k[1] for k in keys]), np.array(v_start), data.nominal_ah, np.asarray(grid, float),
                    source)


def to_cycling(curves: CurveSet, source: str) -> CyclingData:
    """Curves on the grid back in the cycling schema (constant-current records), e.g. for download.

    Time is the charge over the discharge current; each curve becomes one cycle of a cell named
    by its ``cell_id`` (synthetic curves: ``synthetic``), numbered in order.
    """
    frames, rows = [], []
    for k in range(len(curves)):
        q, cur = curves.q[k], max(float(curves.current_a[k]), 1e-3)
        # Inside flat stretches samples carry no information; keep each stretch's two ends.
        rising = np.diff(q) > 1e-9
        keep = np.r_[True, rising] | np.r_[rising, True]
        cell, cyc = str(curves.cell_id[k]), k + 1
        # A load-on sample one grid step above the grid carries the charge delivered before grid[0].
        top = 2 * curves.grid[0] - curves.grid[1]
        frames.append(pd.DataFrame({
            "cell_id": cell, "cycle": cyc, "time_s": np.r_[0.0, q[keep] / cur * 3600.0],
            "voltage_v": np.r_[top, curves.grid[keep]], "current_a": -cur,
            "temperature_c": curves.temperature_c[k], "capacity_ah": curves.soh[k] * curves.nominal_ah,
        }))
        rows.append({"cell_id": cell, "cycle": cyc, "capacity_ah": curves.soh[k] * curves.nominal_ah,
                     "soh": curves.soh[k], "temperature_c": curves.temperature_c[k], "current_a": -cur,
                     "capacity_source": curves.capacity_source[k]})
    return CyclingData(pd.concat(frames, ignore_index=True)[list(SCHEMA)], pd.DataFrame(rows),
                       curves.nominal_ah, source)


def nasa_curves(cache_dir: Path | None = None) -> CurveSet:
    """All NASA cells resampled, cached under ``runs/cache/`` (read once, a few seconds)."""
    from battgai.core.registry import REPO_ROOT
    from battgai.health.schema import load_nasa

    # The name carries a version: bump CACHE_VERSION whenever resampling or labels change.
    path = (cache_dir or REPO_ROOT / "runs" / "cache") / f"nasa_curves_v{CACHE_VERSION}.npz"
    if path.exists():
        return CurveSet.load(path)
    curves = resample(load_nasa())
    curves.save(path)
    return curves


def window(q: np.ndarray, grid: np.ndarray = VOLTAGE_GRID, v_hi: float = WINDOW_V[0],
           v_lo: float = WINDOW_V[1]) -> np.ndarray:
    """The partial window an estimator sees: charge delivered since ``v_hi``, at grid points down to ``v_lo``.

    Returns ``(n, k)``; the first column is 0, the last is the charge between the two voltages.
    """
    q = np.atleast_2d(q)
    sel = (grid <= v_hi + 1e-9) & (grid >= v_lo - 1e-9)
    if sel.sum() < 2:
        raise ValueError(f"window {v_hi} -> {v_lo} V holds fewer than 2 grid points")
    w = q[:, sel]
    return w - w[:, :1]


def window_observed(curves: CurveSet, v_hi: float = WINDOW_V[0], tol: float = 0.02) -> np.ndarray:
    """Curves whose loaded voltage starts at or above ``v_hi - tol``, so the window is really seen.

    At 4 A or 4 C the loaded voltage starts below 3.9 V: the 3.9 -> 3.5 V window is then cut
    and its charge says more about the load than about the cell's health.
    """
    return curves.v_start >= v_hi - tol
