"""The diffusion curve generator, whole-curve rendering, the shared generator API and the default pick."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from battgai.health.estimation import experiment
from battgai.health.generation import generators
from battgai.health.generation.diffusion import Denoiser, DiffusionConfig
from battgai.health.generation.diffusion_sample import sample
from battgai.health.generation.diffusion_train import DiffusionTrainConfig, train_diffusion, vectors
from battgai.health.preprocess import VOLTAGE_GRID, CurveSet, render, resample
from battgai.health.schema import demo_data


@pytest.fixture(scope="module")
def demo() -> CurveSet:
    torch.set_num_threads(1)
    return resample(demo_data(n_cells=4, n_cycles=12))


def test_render_is_flat_above_the_loaded_start_monotone_and_capped():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(-0.01, 0.04, (5, VOLTAGE_GRID.size)), axis=1)
    v_start = np.array([4.1, 4.0, 3.9, 3.8, 4.25])
    out = render(x, v_start, VOLTAGE_GRID)
    assert np.all(np.diff(out, axis=1) >= 0) and out.min() >= 0 and out.max() <= 1
    for k, v in enumerate(v_start):
        above = v < VOLTAGE_GRID
        assert np.all(out[k, above] == out[k, 0])  # the rest-to-load step: one value above the start
    top = np.full(5, 0.002)
    np.testing.assert_allclose(render(x, v_start, VOLTAGE_GRID, top)[0, VOLTAGE_GRID > 4.1], 0.002)


def test_diffusion_training_lowers_the_loss(demo):
    x = vectors(demo)
    before = train_diffusion(demo, train=DiffusionTrainConfig(steps=1))
    after = train_diffusion(demo, train=DiffusionTrainConfig(steps=300, ema=0.9))  # short run: a short EMA

    def loss(gen) -> float:
        m = gen.model
        xt = (torch.tensor(x, dtype=torch.float32) - m.x_mean) / m.x_std
        with torch.no_grad():
            return float(m.loss(xt, torch.tensor(demo.conditions(), dtype=torch.float32),
                                torch.Generator().manual_seed(0)))

    assert loss(after) < 0.7 * loss(before)


def test_diffusion_sample_is_seeded_and_looks_like_a_record(demo):
    gen = train_diffusion(demo, train=DiffusionTrainConfig(steps=20))
    cond = np.array([[0.9, 25.0, 2.0], [0.7, 10.0, -1.0]])
    a, b = sample(gen, cond, seed=3), sample(gen, cond, seed=3)
    np.testing.assert_array_equal(a.q, b.q)
    assert not np.allclose(a.q, sample(gen, cond, seed=4).q)
    assert np.all(np.diff(a.q, axis=1) >= 0)
    assert np.all(a.q[:, -1] <= cond[:, 0] * a.nominal_ah + 1e-12)  # never above the asked capacity
    assert np.all(a.current_a > 0)
    for k in range(2):
        assert np.all(a.q[k, a.grid > a.v_start[k]] == a.q[k, 0])
    with pytest.raises(ValueError, match="SOH"):
        sample(gen, np.array([[1.5, 25.0, 2.0]]))
    with pytest.raises(ValueError, match="need at least 4"):
        train_diffusion(demo.subset(np.arange(3)))


def test_diffusion_noise_prediction_is_conditioned():
    torch.manual_seed(0)
    model = Denoiser(DiffusionConfig(n_dim=5, x_mean=(0.0,) * 5, x_std=(1.0,) * 5))
    x, t = torch.randn(4, 5), torch.full((4,), 500)
    lo, hi = torch.tensor([[0.7, 25.0, 2.0]] * 4), torch.tensor([[1.0, 25.0, 2.0]] * 4)
    assert not torch.allclose(model(x, t, lo), model(x, t, hi))
    assert model.ddim(lo, torch.randn(4, 5), steps=5).shape == (4, 5)


def test_bundled_diffusion_is_fast_and_follows_soh():
    from battgai.health.estimation.estimator import window_features

    gen = generators.load("diffusion")
    assert gen.sha256 and gen.name == "health_diffusion"
    cond = np.column_stack([np.repeat([0.95, 0.75], 250), np.full(500, 24.0), np.full(500, 2.0)])
    generators.sample(gen, cond[:4])
    t0 = time.perf_counter()
    syn = generators.sample(gen, cond, seed=0)
    assert time.perf_counter() - t0 < 3.0  # about a second for hundreds of curves, with margin for a busy CPU
    np.testing.assert_allclose(syn.q[:, -1] / syn.nominal_ah, cond[:, 0], rtol=0.03)
    w = window_features(syn.q / syn.nominal_ah, syn.temperature_c, syn.current_a)[:, 0]
    assert w[:250].mean() > w[250:].mean()
    assert 3.6 < np.median(syn.v_start) < 4.1  # the load-on voltage of 2 A / 24 C NASA discharges


def test_cvae_bank_draws_carry_the_rest_to_load_step(demo):
    gen = generators.train("cvae", demo, steps=20)
    assert gen.model.config.end_range[1] <= (demo.q[:, -1] / (demo.soh * demo.nominal_ah)).max() + 1e-9
    cond = np.array([[0.8, demo.temperature_c[0], demo.current_a[0]]] * 6)
    syn = generators.sample(gen, cond, seed=2)
    assert set(syn.v_start) <= set(demo.v_start)
    for k in range(len(syn)):
        assert np.all(syn.q[k, syn.grid > syn.v_start[k]] == syn.q[k, 0])
    assert {"bank.v_start", "bank.top"} <= set(gen.tensors())


def test_jitter_baseline_copies_the_nearest_curve(demo):
    base = generators.JitterBaseline(demo, sigma=0.0)
    k = 5
    syn = base.sample(demo.conditions()[k:k + 1], seed=0)
    np.testing.assert_allclose(syn.q[0], demo.q[k], atol=1e-12)
    noisy = generators.JitterBaseline(demo).sample(demo.conditions()[:3], seed=0)
    assert np.all(np.diff(noisy.q, axis=1) >= 0)


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"cvae": (0.30, 0.9), "diffusion": (0.05, 1.1)}, "diffusion"),  # more realistic and within the TSTR bar
    ({"cvae": (0.06, 0.9), "diffusion": (0.05, 1.1)}, "cvae"),  # a tie on realism keeps the cVAE
    ({"cvae": (0.30, 0.9), "diffusion": (0.01, 1.5)}, "cvae"),  # realistic but useless for training: not picked
    ({"cvae": (0.30, 1.6), "diffusion": (0.40, 1.4)}, "diffusion"),  # none passes: the lowest ratio
    ({"cvae": (0.30, 0.9)}, "cvae"),
])
def test_default_rule(metrics, expected):
    m = {k: {"discriminative_score": d, "tstr_over_trtr": r} for k, (d, r) in metrics.items()}
    assert generators.pick(m)[0] == expected


def test_default_comes_from_the_bundled_cards():
    from battgai.core import registry

    cards = {k: registry.load_card(n) for k, n in generators.NAMES.items()}
    assert generators.default_kind() in generators.KINDS
    assert "--model diffusion" in cards["diffusion"].retrain_command and cards["diffusion"].sha256
    measured = {k: c.metrics for k, c in cards.items() if "discriminative_score" in c.metrics}
    if len(measured) == 2:
        assert generators.default_kind() == generators.pick(measured)[0]


def test_quality_of_the_diffusion_and_jitter_generators_runs(demo):
    q = experiment.generator_quality(demo, demo, kind="diffusion", steps=10)
    m = q.metrics()
    assert "discriminative_score_prior_sampling" not in m  # the cVAE's only; no NaN in a card
    assert all(np.isfinite(v) for v in m.values())
    j = experiment.generator_quality(demo, demo, kind="jitter")
    assert 0 <= j.discriminative_score <= 0.5 and j.tstr_ratio > 0
    with pytest.raises(ValueError, match="kind"):
        generators.train("gan", demo)


def test_the_drawn_vector_decodes_back_to_the_curve(demo):
    from battgai.health.generation.diffusion_sample import decode, encode
    from battgai.health.generation.sample import shape

    x = shape(demo)
    back, v_start = decode(encode(x, demo.v_start), demo.grid)
    np.testing.assert_allclose(back, x, atol=1e-9)
    np.testing.assert_allclose(v_start, np.clip(demo.v_start, demo.grid[-1], demo.grid[0]))
