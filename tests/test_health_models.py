"""CVAE, sampling from the bundled weights, SOH estimators and the augmentation experiment (tiny runs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from battgai.health import workflow
from battgai.health.estimation import experiment
from battgai.health.estimation.estimator import make_estimator, rmse_points, window_features
from battgai.health.generation.cvae_train import TrainConfig, train_cvae
from battgai.health.generation.model import CVAE, CVAEConfig
from battgai.health.generation.sample import Generator, encode, load, nearest, sample
from battgai.health.preprocess import CurveSet, resample, to_cycling
from battgai.health.schema import demo_data


@pytest.fixture(scope="module")
def demo() -> CurveSet:
    torch.set_num_threads(1)
    return resample(demo_data(n_cells=4, n_cycles=12))


def test_decoder_curves_are_monotone_and_end_near_one():
    torch.manual_seed(0)
    model = CVAE(CVAEConfig())
    x = model.decode(torch.randn(8, 2) * 3, torch.tensor([[0.8, 25.0, 2.0]] * 8))
    assert torch.all(torch.diff(x, dim=1) >= 0)
    assert torch.all((x[:, -1] > 0.97) & (x[:, -1] < 1.03))


def test_training_lowers_the_loss(demo):
    gen = train_cvae(demo, train=TrainConfig(steps=2, seed=0))
    x = torch.tensor(demo.q / (demo.soh[:, None] * demo.nominal_ah), dtype=torch.float32)
    c = torch.tensor(demo.conditions(), dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(gen.model.loss(x, c)[0])
    gen = train_cvae(demo, train=TrainConfig(steps=150, seed=0))
    torch.manual_seed(0)
    with torch.no_grad():
        assert float(gen.model.loss(x, c)[0]) < 0.5 * before


def test_sample_is_seeded_and_hits_the_asked_capacity(demo):
    gen = train_cvae(demo, train=TrainConfig(steps=20))
    cond = np.array([[0.9, 25.0, 2.0], [0.7, 10.0, 1.0]])
    a, b = sample(gen, cond, seed=3), sample(gen, cond, seed=3)
    np.testing.assert_array_equal(a.q, b.q)
    assert not np.allclose(a.q, sample(gen, cond, seed=4).q)
    np.testing.assert_allclose(a.q[:, -1] / a.nominal_ah, cond[:, 0], rtol=0.025)
    with pytest.raises(ValueError, match="SOH"):
        sample(gen, np.array([[1.5, 25.0, 2.0]]))
    with pytest.raises(ValueError, match="shape"):
        sample(gen, cond, z=np.zeros((3, 2)))


def test_bank_sampling_uses_matching_conditions(demo):
    gen = train_cvae(demo, train=TrainConfig(steps=20))
    assert gen.bank_mu.shape == (len(demo), gen.model.config.latent)
    cond = np.array([[0.8, demo.temperature_c[0], demo.current_a[0]]] * 4)
    a, b = sample(gen, cond, seed=1), sample(gen, cond, seed=1)
    np.testing.assert_array_equal(a.q, b.q)
    prior = sample(gen, cond, seed=1, z_source="prior")
    assert not np.allclose(a.q, prior.q)
    with pytest.raises(ValueError, match="z_source"):
        sample(gen, cond, z_source="other")
    # the bank travels with the weights
    tensors = gen.tensors()
    assert {"bank.mu", "bank.logvar", "bank.cond"} <= set(tensors)


def test_bundled_generator_samples():
    load()  # a second load must find the bank too (the weights are cached between loads)
    gen = load()
    assert gen.sha256 and gen.name == "health_cvae"
    assert gen.bank_mu is not None and len(gen.bank_mu) == len(gen.bank_cond)
    cond = workflow.target_conditions([0.95, 0.75], 24.0, 2.0, 3)
    syn = sample(gen, cond, seed=0)
    assert syn.q.shape == (6, gen.grid.size)
    assert np.all(np.diff(syn.q, axis=1) >= 0)
    # higher SOH -> more charge in the 3.9 -> 3.5 V window, as in real cells
    w = window_features(syn.q / syn.nominal_ah, syn.temperature_c, syn.current_a)[:, 0]
    assert w[:3].mean() > w[3:].mean()
    z = encode(gen, syn)
    assert z.shape == (6, gen.model.config.latent) and np.isfinite(z).all()


def test_bundled_soh_estimator_predicts_from_the_window():
    from battgai.core import registry
    from battgai.health.estimation.estimator import load_mlp

    card = registry.load_card("health_soh_mlp")
    assert card.task == "health" and card.metrics and "loco" in next(iter(card.metrics))
    est = load_mlp()
    gen = load()
    syn = sample(gen, workflow.target_conditions([0.95, 0.7], 24.0, 2.0, 5), seed=0)
    pred = est.predict(syn)
    # ordered like the SOH the curves were generated at, and in a plausible range
    assert pred[:5].mean() > pred[5:].mean() + 0.1
    assert np.all((pred > 0.4) & (pred < 1.2))


def test_generation_round_trips_through_the_schema(demo):
    gen = train_cvae(demo, train=TrainConfig(steps=10))
    res = workflow.generate(gen, workflow.target_conditions([0.9], 25.0, 2.0, 2), demo, seed=1)
    assert res.nearest.shape == (2,) and res.nearest.max() < len(demo)
    assert b"soh" in res.csv().splitlines()[0]
    back = resample(to_cycling(res.synthetic, "x"))
    np.testing.assert_allclose(back.q, res.synthetic.q, atol=1e-9)


def test_nearest_finds_itself(demo):
    np.testing.assert_array_equal(nearest(demo.subset(np.arange(5)), demo), np.arange(5))


@pytest.mark.parametrize("kind", ["ridge", "gbm", "mlp"])
def test_estimators_beat_predicting_the_mean(demo, kind):
    train = demo.subset(demo.cell_id != "DEMO1")
    test = demo.subset(demo.cell_id == "DEMO1")
    pred = make_estimator(kind).fit(train).predict(test)
    assert rmse_points(test.soh, pred) < rmse_points(test.soh, np.full(len(test), train.soh.mean()))


def test_augmentations_keep_labels_consistent(demo):
    rng = np.random.default_rng(0)
    j = experiment.jitter(demo, 10, rng)
    m = experiment.mixup(demo, 10, rng)
    assert len(j) == len(m) == 10
    assert np.all(np.diff(j.q, axis=1) >= 0) and np.all(np.diff(m.q, axis=1) >= -1e-12)
    assert m.soh.min() >= demo.soh.min() - 1e-12 and m.soh.max() <= demo.soh.max() + 1e-12


def test_tiny_augmentation_experiment(demo):
    res = experiment.augmentation_experiment(demo, n_splits=2, seeds=(0,), steps=5)
    assert len(res.splits) == 2 and all(len(s) == 2 for s in res.splits)
    for arm in experiment.ARMS:
        assert len(res.rmse["ridge"][arm]) == 2
        assert np.isfinite(res.summary("ridge")[arm]).all()
    assert res.relative_change("ridge", "real only") == 0.0


def test_discriminative_score_separates_and_confuses():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    groups = np.repeat(np.arange(6), 10)
    assert experiment.discriminative_score(real, real + 5.0, groups) > 0.4
    assert experiment.discriminative_score(real, rng.normal(size=(60, 5)), groups) < 0.2


def test_generator_needs_curves():
    tiny = resample(demo_data(n_cells=1, n_cycles=3))
    with pytest.raises(ValueError, match="at least 4"):
        train_cvae(tiny)
    assert isinstance(Generator(CVAE(CVAEConfig()), 2.0).grid, np.ndarray)


def test_bench_report_runs_on_demo_cells(demo):
    from battgai.bench.health import cohort_report, targets_table

    lines, numbers = cohort_report("demo", demo, demo, n_splits=1, seeds=1, steps=5, quality_steps=5)
    text = "\n".join(lines)
    assert "Low data (a)" in text and "Low data (b)" in text and "TSTR / TRTR" in text
    rows = [r for r in targets_table(numbers, numbers) if r.startswith("| (") or "<=" in r or "TSTR" in r]
    assert len(rows) == 11  # 8 low-data rows (2 regimes x 2 estimators x 2 targets) + 3 quality targets
    assert all(r.count("hit") + r.count("**missed**") == 2 for r in rows)


def test_estimate_soh_needs_an_observed_window(demo):
    from battgai.health.estimation.estimator import load_mlp

    est = workflow.estimate_soh(demo, load_mlp(), "health_soh_mlp")
    assert len(est.predicted) == len(est.curves) and est.rmse >= 0
    cut = demo.subset(np.arange(len(demo)))
    cut.v_start = np.full(len(cut), 3.6)  # load-on below 3.9 V: the window was never seen
    with pytest.raises(ValueError, match="never observed"):
        workflow.estimate_soh(cut, load_mlp(), "health_soh_mlp")


def test_ridge_ic_picks_its_penalty_from_training_cells_only(demo):
    from battgai.health.estimation.estimator import IC_ALPHAS, ic_features

    x = ic_features(demo.q / demo.nominal_ah, demo.temperature_c, demo.current_a, demo.grid)
    assert x.shape == (len(demo), 9) and np.isfinite(x).all()
    train = demo.subset(demo.cell_id != "DEMO1")
    est = make_estimator("ridge_ic").fit(train)
    assert est.alpha in IC_ALPHAS
    # the held-out cell's labels play no part: refitting with them scrambled gives the same model
    scrambled = demo.subset(np.arange(len(demo)))
    held = scrambled.cell_id == "DEMO1"
    scrambled.soh[held] = np.random.default_rng(0).permutation(scrambled.soh[held])
    again = make_estimator("ridge_ic").fit(scrambled.subset(~held))
    np.testing.assert_array_equal(est.model.coef_, again.model.coef_)


def test_bundled_ridge_ic_rebuilds_the_fitted_model():
    from battgai.core import registry
    from battgai.health.estimation.estimator import FeatureEstimator, load_ridge_ic

    card = registry.load_card("health_soh_ridge_ic")
    assert card.metrics["loco_rmse_soh_points_pooled"] < card.metrics["mlp_baseline_loco_rmse_pooled"]
    est = load_ridge_ic()
    assert isinstance(est, FeatureEstimator) and est.kind == "ridge_ic"
    syn = sample(load(), workflow.target_conditions([0.95, 0.7], 24.0, 2.0, 5), seed=0)
    pred = est.predict(syn)
    assert pred[:5].mean() > pred[5:].mean() + 0.1
    assert np.all((pred > 0.4) & (pred < 1.2))


def test_loco_reports_each_held_out_cells_bias(demo):
    res = experiment.loco(demo, ("ridge_ic",))["ridge_ic"]
    assert set(res.per_cell_bias) == set(res.per_cell) == set(np.unique(demo.cell_id))
    assert all(abs(b) <= r + 1e-9 for b, r in zip(res.per_cell_bias.values(), res.per_cell.values(), strict=True))


def test_estimates_outside_the_training_range_are_flagged_and_left_out_of_the_rmse():
    import numpy as np

    from battgai.health import workflow
    from battgai.health.estimation.estimator import FeatureEstimator, TrainingRange
    from battgai.health.preprocess import window_observed

    curves = resample(demo_data(n_cells=4, n_cycles=40))
    curves = curves.subset(window_observed(curves))
    young = curves.subset(curves.soh >= np.quantile(curves.soh, 0.5))
    est = FeatureEstimator("ridge_ic").fit(young)
    assert est.range_ == TrainingRange.of(young)
    result = workflow.estimate_soh(curves, est, "test")
    aged = curves.soh < young.soh.min() - 0.1
    assert aged.any() and result.extrapolating[aged].mean() >= 0.8  # far below the training SOH: flagged
    assert not result.extrapolating[curves.soh >= young.soh.min()].all()
    flagged = np.flatnonzero(result.extrapolating)
    assert all("outside the training" in result.reasons[i] for i in flagged)
    ok = ~result.extrapolating
    assert result.rmse == pytest.approx(np.sqrt(np.mean((curves.soh[ok] - result.predicted[ok]) ** 2)) * 100)
    table = result.table()
    assert table.extrapolating.tolist() == result.extrapolating.tolist() and "reason" in table
    hot = dataclasses.replace(curves, temperature_c=curves.temperature_c + 80.0)  # far above anything seen
    assert all("temperature" in r for r in est.range_.outside(hot, result.predicted))


def test_the_bundled_estimator_carries_its_training_range():
    from battgai.health.estimation.estimator import load_ridge_ic

    rng = load_ridge_ic().range_
    assert rng.soh[0] < 0.6 < rng.soh[1] and rng.temperature_c == (24.0, 44.0)
