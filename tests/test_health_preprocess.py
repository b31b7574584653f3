"""Resampling discharge curves onto the fixed voltage grid, and the partial window."""

from __future__ import annotations

import numpy as np
import pytest

from battgai.health.preprocess import (
    VOLTAGE_GRID,
    CurveSet,
    discharge_capacity_curve,
    resample,
    window,
    window_observed,
)
from battgai.health.schema import demo_data
from tests.conftest import requires_data


def test_linear_discharge_gives_exact_charge():
    # 1 A for one hour, voltage falling linearly 4.2 -> 2.7 V: Q(V) = (4.2 - V) / 1.5 Ah
    t = np.linspace(0, 3600, 721)
    v = np.linspace(4.2, 2.7, t.size)
    q = discharge_capacity_curve(t, v, -np.ones_like(t))
    np.testing.assert_allclose(q, (4.2 - VOLTAGE_GRID) / 1.5, atol=2e-3)


def test_rest_and_relaxation_are_ignored():
    t = np.arange(0, 4000, 10.0)
    i = np.where((t >= 100) & (t < 3700), -2.0, 0.0)
    v = np.where(i < 0, 4.0 - (t - 100) / 3600 * 1.3, 4.19)
    v[t >= 3700] = 3.3  # relaxation after cut-off: voltage recovers, no current
    q = discharge_capacity_curve(t, v, i)
    assert q[-1] == pytest.approx(2.0, abs=0.02)
    assert q[0] < 0.02  # grid voltages above the first loaded sample get ~0 charge
    assert np.all(np.diff(q) >= 0)


def test_noise_bump_keeps_curve_monotone():
    t = np.linspace(0, 3600, 361)
    v = np.linspace(4.1, 2.7, t.size)
    v[100:105] += 0.05  # a recovery bump must not make charge flow back
    q = discharge_capacity_curve(t, v, -np.ones_like(t))
    assert np.all(np.diff(q) >= 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.arange(5.0), np.ones(4), -np.ones(5)), "equal length"),
        ((np.arange(5.0)[::-1], np.ones(5), -np.ones(5)), "non-decreasing"),
        ((np.arange(5.0), np.array([4, 3.9, np.nan, 3.7, 3.6]), -np.ones(5)), "NaN"),
        ((np.arange(5.0), np.ones(5), np.ones(5)), "fewer than 3"),
    ],
)
def test_bad_records_refused(args, message):
    with pytest.raises(ValueError, match=message):
        discharge_capacity_curve(*args)


def test_resample_demo_and_window():
    d = demo_data(n_cells=2, n_cycles=5)
    c = resample(d)
    assert c.q.shape == (10, VOLTAGE_GRID.size)
    # coulomb counting down to 2.7 V recovers the demo capacity: the grid keeps the SOH
    np.testing.assert_allclose(c.q[:, -1] / d.nominal_ah, c.soh, atol=0.02)
    w = window(c.q)
    assert w.shape == (10, 17) and np.all(w[:, 0] == 0) and np.all(w[:, -1] > 0)
    assert window_observed(c).dtype == bool


def test_curveset_cache_round_trip(tmp_path):
    c = resample(demo_data(n_cells=1, n_cycles=3))
    c.save(tmp_path / "c.npz")
    back = CurveSet.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.q, c.q)
    assert back.nominal_ah == c.nominal_ah and list(back.cell_id) == list(c.cell_id)


@requires_data("nasa_pcoe")
def test_nasa_coulomb_count_matches_label():
    from battgai.health.preprocess import nasa_curves

    c = nasa_curves()
    # NASA's capacity is the discharge to 2.7 V: our Q(2.7 V) must agree to about a SOH point
    err = np.sqrt(np.mean((c.q[:, -1] / c.nominal_ah - c.soh) ** 2)) * 100
    assert err < 1.0
