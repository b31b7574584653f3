"""Degradations, io helpers, segmentation and metrics: small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from battgai.microstructure import io as msio
from battgai.microstructure.analysis import metrics, segment
from battgai.microstructure.enhancement import degrade
from tests.conftest import requires_data


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- degrade ---------------------------------------------------------------------------------

def test_blur_downsample_is_block_mean_without_blur():
    img = rng().random((9, 12)).astype(np.float32)
    lr = degrade.blur_downsample(img, 3, sigma=0)
    assert lr.shape == (3, 4)
    np.testing.assert_allclose(lr[1, 2], img[3:6, 6:9].mean(), rtol=1e-6)


def test_blur_downsample_checks_arguments():
    with pytest.raises(ValueError, match="2D"):
        degrade.blur_downsample(np.zeros((4, 4, 4)), 2)
    with pytest.raises(ValueError, match="positive integer"):
        degrade.blur_downsample(np.zeros((8, 8)), 0)
    with pytest.raises(ValueError, match="smaller than the scale"):
        degrade.blur_downsample(np.zeros((3, 8)), 4)


def test_noise_is_seeded_and_has_the_requested_strength():
    img = np.full((128, 128), 0.5, np.float32)
    a = degrade.add_noise(img, rng(1), sigma=0.05)
    b = degrade.add_noise(img, rng(1), sigma=0.05)
    np.testing.assert_array_equal(a, b)
    assert abs(float(a.std()) - 0.05) < 0.005
    poisson = degrade.add_noise(img, rng(2), sigma=0.0, photons=50.0)
    # Poisson noise: variance = mean / photons.
    assert abs(float(poisson.var()) - 0.5 / 50) < 0.002


@pytest.mark.parametrize("fn", [degrade.ring_artifacts, degrade.streak_artifacts, degrade.scanline_noise])
def test_artefacts_change_the_image_and_stay_in_range(fn):
    img = np.full((64, 64), 0.5, np.float32)
    out = fn(img, rng(3))
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - img).max() > 0.01


def test_scanline_noise_is_constant_along_rows():
    out = degrade.scanline_noise(np.full((16, 32), 0.5, np.float32), rng(4))
    assert np.allclose(out.std(axis=1), 0.0)
    assert out[:, 0].std() > 0


def test_correlated_noise_has_the_requested_strength_and_spreads_over_neighbours():
    img = np.full((128, 128), 0.5, np.float32)
    out = degrade.correlated_noise(img, rng(5), sigma=0.05, kernel_px=1.0) - img
    assert abs(float(out.std()) - 0.05) < 0.005
    # White noise has no lag-1 correlation; smoothed over 1 px it has about exp(-1/4) = 0.78.
    lag1 = float(np.corrcoef(out[:, :-1].ravel(), out[:, 1:].ravel())[0, 1])
    assert 0.6 < lag1 < 0.9


def test_random_noise_and_appearance_stay_in_range_and_are_seeded():
    img = msio.demo_image((64, 64), seed=1)
    for seed in range(20):
        clean = degrade.random_appearance(img, rng(seed))
        noisy = degrade.random_noise(clean, rng(seed))
        assert clean.shape == noisy.shape == img.shape and noisy.dtype == np.float32
        assert min(noisy.min(), clean.min()) >= 0.0 and max(noisy.max(), clean.max()) <= 1.0
    np.testing.assert_array_equal(degrade.random_noise(img, rng(7)), degrade.random_noise(img, rng(7)))


# --- io ----------------------------------------------------------------------------------------

def test_to_float_scales_by_dtype():
    assert msio.to_float(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    assert msio.to_float(np.array([[0, 65535]], np.uint16)).max() == 1.0
    assert msio.to_float(np.array([0.2, 0.4], np.float32)).tolist() == pytest.approx([0.2, 0.4])
    assert msio.to_float(np.array([[-1.0, 3.0]])).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="NaN"):
        msio.to_float(np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize(("values", "dtype", "hi", "what"), [
    ([0, 200], np.uint8, 255, "8-bit in uint8 (0 to 255)"),
    ([0, 4000], np.uint16, 4095, "12-bit in uint16 (0 to 4095)"),
    ([3, 9000], np.uint16, 16383, "14-bit in uint16 (0 to 16383)"),
    ([0, 40000], np.uint16, 65535, "16-bit in uint16 (0 to 65535)"),
    ([0, 1000], np.uint16, 1023, "10-bit in uint16 (0 to 1023)"),
])
def test_an_integer_image_is_read_on_the_bit_depth_that_holds_it(values, dtype, hi, what):
    image = np.array([values], dtype)
    r = msio.intensity_range(image)
    assert (r.lo, r.hi, r.what) == (0.0, hi, what)
    assert msio.to_float(image).max() == pytest.approx(values[1] / hi)
    np.testing.assert_array_equal(msio.from_float(msio.to_float(image), like=image), image)  # round trip


def test_ct_numbers_are_read_between_robust_percentiles_and_come_back_as_they_were():
    ct = np.random.default_rng(0).integers(-1000, 3000, (200, 200)).astype(np.int16)
    ct[0, 0] = -32768  # one dead pixel does not set the scale
    r = msio.intensity_range(ct)
    assert -1001 <= r.lo < -990 and r.hi == 2999 and "low outliers set aside" in r.what
    x = msio.to_float(ct)
    assert 0.95 < np.mean((x >= 0) & (x <= 1)) < 1.0
    np.testing.assert_array_equal(msio.from_float(x, like=ct), ct)


def test_a_12_bit_and_a_16_bit_copy_of_an_image_look_the_same():
    image = np.random.default_rng(1).random((32, 32))
    twelve, sixteen = np.rint(image * 4095).astype(np.uint16), np.rint(image * 65535).astype(np.uint16)
    assert np.abs(msio.to_float(twelve) - msio.to_float(sixteen)).max() < 1 / 4095


def test_phase_labels_maps_values_in_order():
    lab = msio.phase_labels(np.array([[0, 85], [170, 85]], np.uint8))
    assert lab.tolist() == [[0, 1], [2, 1]]
    with pytest.raises(ValueError, match="at most 8 phases"):
        msio.phase_labels(np.arange(100).reshape(10, 10))


def test_demo_data_are_three_phase_and_rendered_in_range():
    lab = msio.demo_labels((64, 64), porosity=0.4, seed=1)
    assert set(np.unique(lab)) == {0, 1, 2}
    assert 0.2 < metrics.volume_fraction(lab, 0) < 0.6
    img = msio.render_grey(lab)
    assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
    # NMC (bright) is brighter than pore on average after rendering.
    assert img[lab == 1].mean() > img[lab == 0].mean() + 0.3


# --- segment -----------------------------------------------------------------------------------

def test_multiotsu_recovers_three_levels():
    lab = msio.demo_labels((64, 64), seed=2)
    img = np.array([0.1, 0.8, 0.45])[lab] + rng().normal(0, 0.02, lab.shape)
    seg = segment.segment(np.clip(img, 0, 1), classes=3)
    # Phases come out ordered by brightness: pore (0.1) -> 0, CBD (0.45) -> 1, NMC (0.8) -> 2.
    assert np.mean(seg == np.array([0, 2, 1])[lab]) > 0.99


def test_segment_refuses_constant_and_bad_thresholds():
    with pytest.raises(ValueError, match="distinct grey levels"):
        segment.multiotsu_thresholds(np.full((16, 16), 0.3), 3)
    with pytest.raises(ValueError, match="increasing"):
        segment.apply_thresholds(np.zeros((8, 8)), [0.6, 0.4])
    assert segment.apply_thresholds(np.array([[0.1, 0.5, 0.9]]), [0.3, 0.7]).tolist() == [[0, 1, 2]]


# --- metrics -----------------------------------------------------------------------------------

def ball(n: int, r: float, ndim: int) -> np.ndarray:
    grid = np.indices((n,) * ndim) - (n - 1) / 2
    return (np.sqrt((grid**2).sum(0)) <= r).astype(np.uint8)


def test_specific_surface_area_of_disc_and_sphere():
    # The 0.5 iso-surface of a digitised disc / ball of radius r sits about half a pixel outside it.
    assert metrics.specific_surface_area(ball(64, 20, 2), 1) == pytest.approx(2 * np.pi * 20.5 / 64**2, rel=0.05)
    assert metrics.specific_surface_area(ball(40, 12, 3), 1) == pytest.approx(4 * np.pi * 12.5**2 / 40**3, rel=0.05)
    assert metrics.specific_surface_area(np.ones((8, 8), np.uint8), 1) == 0.0


def test_two_point_correlation_limits():
    lab = (rng(5).random((96, 96)) < 0.3).astype(np.uint8)
    r, s2 = metrics.two_point_correlation(lab, 1, r_max=10)
    assert r[0] == 0 and s2[0] == pytest.approx(lab.mean())
    # Uncorrelated noise: S2 drops to phi^2 immediately.
    assert s2[3:].mean() == pytest.approx(lab.mean() ** 2, abs=0.01)


def test_local_thickness_of_a_disc_is_its_radius():
    disc = ball(41, 10, 2).astype(bool)
    thick = metrics.local_thickness(disc)
    assert thick[20, 20] == 10
    assert np.mean(thick[disc] >= 9) > 0.95
    radius, frac = metrics.size_distribution(disc.astype(np.uint8), 1, bins=10)
    assert frac.sum() == pytest.approx(1.0) and radius[np.argmax(frac)] > 8


def test_tortuosity_of_straight_channels_is_one_and_blocked_is_inf():
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[:, ::2, :] = 1
    res = metrics.tortuosity(lab, 1, axis=0)
    assert res.tau == pytest.approx(1.0, abs=0.05)
    blocked = lab.copy()
    blocked[8] = 0
    assert metrics.tortuosity(blocked, 1, axis=0).tau == float("inf")
    cropped = metrics.tortuosity(np.ones((40, 20, 20), np.uint8), 1, axis=0, max_side=16)
    assert cropped.solved_shape == (16, 16, 16) and "cropped" in cropped.note


def test_metrics_check_inputs():
    with pytest.raises(ValueError, match="integers"):
        metrics.volume_fraction(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="2D image or a 3D volume"):
        metrics.volume_fraction(np.zeros(4, np.uint8), 0)
    with pytest.raises(ValueError, match="absent"):
        metrics.size_distribution(np.zeros((8, 8), np.uint8), 1)


# --- components/volume_view ----------------------------------------------------------------------

def test_volume_view_figures():
    from components import volume_view

    vol = msio.demo_labels((40, 40, 40), seed=0)
    fig = volume_view.volume_figure(vol, {1: "NMC"}, phases=(1,), max_side=20)
    assert len(fig.data) == 1 and fig.data[0].name == "NMC" and len(fig.data[0].x) == 20**3
    hist = volume_view.histogram_figure({"a": np.linspace(0, 1, 1000)}, thresholds=(0.3, 0.6))
    assert len(hist.data) == 1 and len(hist.layout.shapes) == 2
    assert volume_view.labels_figure(vol[0]).data[0].z.shape == (40, 40)
    assert volume_view.image_figure(np.zeros((3000, 10))).data[0].z.shape == (1000, 4)
    with pytest.raises(ValueError, match="3D"):
        volume_view.volume_figure(vol[0])
    with pytest.raises(ValueError, match="2D"):
        volume_view.image_figure(vol)


# --- the split on the real data -----------------------------------------------------------------

@requires_data("microstructure")
def test_split_keeps_held_out_pixels_out_of_training():
    assert msio.RAW_TRAIN_COLS[1] < msio.RAW_TEST_COLS[0]
    held = msio.heldout_images()
    labels = msio.heldout_labels()
    assert set(labels) < set(held)
    for name, lab in labels.items():
        assert lab.shape == held[name].shape and set(np.unique(lab)) == {0, 1, 2}
    train, test = msio.real_volume("train"), msio.real_volume("test")
    assert train.shape == test.shape == (128, 256, 256)
