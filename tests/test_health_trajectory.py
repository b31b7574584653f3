"""Per-cycle feature trajectories: generator, sampling, experiment (tiny, on made-up features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from battgai.health.generation import trajectory as tj
from tests.conftest import requires_data


def _fake_lab(n_cells: int = 4, n_cycles: int = 30, seed: int = 0) -> tj.FeatureSet:
    """Features that move with SOH plus a per-cell offset, like a real lab's rows."""
    rng = np.random.default_rng(seed)
    rows, soh, cell, cyc = [], [], [], []
    for k in range(n_cells):
        s = 1.0 - np.linspace(0, rng.uniform(0.15, 0.25), n_cycles)
        offset = rng.normal(0, 0.2, len(tj.FEATURES))
        w = np.linspace(-1, 1, len(tj.FEATURES))
        rows.append(s[:, None] * w + offset + rng.normal(0, 0.01, (n_cycles, len(tj.FEATURES))))
        soh.append(s)
        cell += [f"c{k}"] * n_cycles
        cyc.append(np.arange(1, n_cycles + 1))
    return tj.FeatureSet(np.vstack(rows), np.concatenate(soh), np.array(cell), np.concatenate(cyc), "fake")


def test_scaler_round_trip_and_clip():
    x = np.random.default_rng(0).normal(5, 2, (100, 3))
    s = tj.Scaler.fit(x)
    np.testing.assert_allclose(s.inverse(s(x)), x, atol=1e-9)
    assert np.abs(s(x * 1000)).max() <= 8.0


def test_trajectories_keep_the_fade_and_the_schema():
    torch.set_num_threads(1)
    fs = _fake_lab()
    gen = tj.train_generator(fs, steps=200)
    syn = tj.sample_trajectories(gen, 3, seed=0)
    assert syn.x.shape[1] == len(tj.FEATURES)
    assert len(np.unique(syn.cell_id)) == 3
    for cell in np.unique(syn.cell_id):
        s = syn.soh[syn.cell_id == cell]
        assert s[0] > s[-1]  # each synthetic cell ages
    again = tj.sample_trajectories(gen, 3, seed=0)
    np.testing.assert_array_equal(again.x, syn.x)


def test_tiny_feature_experiment_with_transfer():
    fs, other = _fake_lab(seed=0), _fake_lab(seed=1)
    res = tj.feature_experiment(fs, n_splits=2, steps=20, other=other)
    assert set(res.summary()) == {"real only", "+ jitter", "+ mixup", "+ cVAE"}
    assert all(len(v) == 2 for v in res.rmse.values())
    assert res.transfer_lab == "fake" and set(res.transfer) == {"real only", "+ cVAE"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="lab"):
        tj.load_features("nowhere")
    with pytest.raises(ValueError, match="at least 4"):
        tj.train_generator(_fake_lab().subset(np.arange(3)))


@requires_data("cycling_features")
def test_load_xjtu():
    fs = tj.load_features("xjtu", every=50)
    assert fs.x.shape[1] == 16 and np.isfinite(fs.x).all()
    assert fs.soh.min() > 0.6 and fs.soh.max() < 1.1
