"""Denoising never worse than its input (guard), output in the input's dtype and scale, Noise2Void fit."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from scipy import ndimage as ndi

from battgai.microstructure import pipeline
from battgai.microstructure.enhancement import guard, selffit
from battgai.microstructure.enhancement.enhance import MODEL_NAMES, apply_model, load_model
from battgai.microstructure.enhancement.evaluate import psnr_ssim
from battgai.microstructure.io import demo_labels, from_float, to_float


def _three_phase(shape=(160, 160), seed=0) -> np.ndarray:
    """A 0 / 0.5 / 1 image of blobs: how a segmented slice looks once rendered as grey."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 4)
    return np.digitize(field, np.quantile(field, [0.4, 0.75])).astype(np.float32) / 2


def _grey(shape=(160, 160), seed=1) -> np.ndarray:
    """Smooth grey-level texture in [0.1, 0.9] (no plateaus), like a raw CT slice."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 3)
    return (0.1 + 0.8 * (field - field.min()) / np.ptp(field)).astype(np.float32)


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.clip(clean + np.random.default_rng(seed).normal(0, sigma, clean.shape), 0, 1).astype(np.float32)


def _correlated(shape, std: float, seed: int = 7) -> np.ndarray:
    """Gaussian noise smoothed over 1 px, rescaled to ``std``: how reconstruction noise looks."""
    n = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.0)
    return n / n.std() * std


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_output_keeps_the_input_dtype_and_intensity_scale(dtype):
    clean = _grey()
    if np.dtype(dtype).kind == "u":
        image = np.round(_noisy(clean, 0.05) * np.iinfo(dtype).max).astype(dtype)
    else:
        image = (200.0 + 1000.0 * _noisy(clean, 0.05)).astype(dtype)  # a float image in physical units
    res = pipeline.enhance(image, "denoise")
    assert res.output.dtype == image.dtype and res.output.shape == image.shape
    assert image.min() <= res.output.min() and res.output.max() <= image.max()
    if np.dtype(dtype).kind == "u":
        assert np.allclose(res.output / np.iinfo(dtype).max, res.after, atol=0.6 / np.iinfo(dtype).max)
    else:
        assert np.allclose(from_float(res.after, like=image), res.output)
        assert abs(float(res.output.mean()) - float(image.mean())) < 20  # back in physical units, not [0, 1]


def test_from_float_inverts_to_float():
    for image in (np.array([[0, 17, 255]], np.uint8), np.array([[3, 40000, 65535]], np.uint16),
                  np.array([[-2.5, 0.0, 7.0]], np.float32), np.array([[0.2, 0.3]], np.float64)):
        back = from_float(to_float(image), like=image)
        assert back.dtype == image.dtype and np.allclose(back, image, atol=1e-5 * np.ptp(image))


def test_a_segmented_like_image_is_not_made_worse_and_says_why():
    clean = _three_phase()
    noisy = _noisy(clean, 0.1)
    model, _ = load_model(MODEL_NAMES["denoise"])
    bundled_alone = psnr_ssim(clean, apply_model(noisy, model))[0]
    noisy_psnr = psnr_ssim(clean, noisy)[0]
    assert bundled_alone < noisy_psnr  # the failure this guards against: edges smeared into grey
    res = pipeline.enhance(noisy, "denoise")
    assert res.decision.levels == 3 and res.method == "phase levels (3)"
    assert not res.decision.in_model_domain and any("looks segmented" in n for n in res.decision.notes)
    psnr = psnr_ssim(clean, res.after)[0]
    nlm = psnr_ssim(clean, guard.non_local_means(noisy, res.decision.noise_sigma))[0]
    assert psnr >= noisy_psnr + 3 and psnr >= nlm


def test_a_grey_image_gets_the_best_scoring_method_and_gains():
    clean = _grey()
    noisy = _noisy(clean, 0.08)
    res = pipeline.enhance(noisy, "denoise")
    d = res.decision
    assert d.levels == 0 and {s.method for s in d.scores} == {guard.MODEL_METHOD, *guard.CLASSICAL}
    assert d.method == max(d.scores, key=lambda s: s.est_gain_db).method
    assert d.noise_sigma == pytest.approx(0.08, rel=0.2)
    truth = {guard.MODEL_METHOD: apply_model(noisy, load_model(MODEL_NAMES["denoise"])[0]),
             "non-local means": guard.non_local_means(noisy, d.noise_sigma),
             "total variation": guard.total_variation(noisy)}
    best_true = max(psnr_ssim(clean, v)[0] for v in truth.values())
    psnr = psnr_ssim(clean, res.after)[0]
    assert psnr >= psnr_ssim(clean, noisy)[0] + 3 and psnr >= best_true - 0.5
    assert abs(res.residual_correlation) < guard.RESIDUAL_STRUCTURE  # removed noise, not structure


def test_a_clean_image_is_kept_as_it_is():
    image = np.round(_grey() * 255).astype(np.uint8)
    res = pipeline.enhance(image, "denoise")
    assert res.method == guard.NONE and np.array_equal(res.output, image)


def test_a_stack_is_denoised_slice_by_slice_with_one_decision():
    field = ndi.gaussian_filter(np.random.default_rng(3).normal(size=(8, 96, 96)), 3)
    vol = np.digitize(field, np.quantile(field, [0.4, 0.75])).astype(np.float32) / 2
    noisy = _noisy(vol, 0.1)
    res = pipeline.enhance(noisy, "denoise")
    assert res.after.shape == vol.shape and res.method == "phase levels (3)"
    assert psnr_ssim(vol, res.after)[0] > psnr_ssim(vol, noisy)[0] + 3


def test_pixel_scale_structure_that_passes_for_noise_is_kept_as_it_is():
    # The demo volume's phases change from pixel to pixel: no method can tell them from noise, so none is used.
    vol = demo_labels((8, 96, 96), porosity=0.4, seed=3).astype(np.float32) / 2
    noisy = _noisy(vol, 0.1)
    res = pipeline.enhance(noisy, "denoise")
    assert res.method == guard.NONE and np.array_equal(res.after, noisy)


def test_correlated_noise_is_seen_and_removed_with_a_gain():
    clean = _grey((256, 256))
    noisy = np.clip(clean + _correlated(clean.shape, 0.05), 0, 1).astype(np.float32)
    assert guard.estimate_noise(noisy) < 0.01  # the finest wavelet scale misses most of it
    sigma, kernel = guard.estimate_correlated_noise(noisy)
    assert sigma == pytest.approx(0.05, rel=0.2) and kernel == pytest.approx(1.0, abs=0.25)
    assert guard.estimate_correlated_noise(_noisy(clean, 0.05))[1] < guard.CORRELATED_MIN_PX  # white noise: 0 px
    res = pipeline.enhance(noisy, "denoise")
    d = res.decision
    assert d.noise_correlation_px > 0 and not d.in_model_domain and d.method in guard.CLASSICAL
    assert psnr_ssim(clean, res.after)[0] >= psnr_ssim(clean, noisy)[0] + 2
    assert abs(res.residual_correlation) < guard.residual_structure_threshold(d)


def test_a_forced_method_is_used_recorded_and_keeps_dtype_and_scale():
    clean = _grey()
    image = np.round(_noisy(clean, 0.08) * 65535).astype(np.uint16)
    res = pipeline.enhance(image, "denoise", method="total variation")
    d = res.decision
    assert d.forced and res.method == "total variation" and d.automatic == guard.MODEL_METHOD
    assert any("forced by the user" in n for n in d.notes) and len(d.scores) == 3  # what was overridden
    assert np.allclose(res.after, guard.total_variation(to_float(image)))
    assert res.output.dtype == np.uint16 and image.min() <= res.output.min() and res.output.max() <= image.max()
    # On a segmented-like image the scores are computed for a forced method too; phase levels get their k.
    noisy = _noisy(_three_phase(), 0.1)
    forced = pipeline.enhance(noisy, "denoise", method=guard.MODEL_METHOD).decision
    assert forced.automatic == "phase levels (3)" and forced.scores and forced.method == guard.MODEL_METHOD
    assert pipeline.enhance(_noisy(clean, 0.08), "denoise", method=guard.PHASE_LEVELS).method.startswith(
        "phase levels (")
    kept = pipeline.enhance(image, "denoise", method=guard.NONE)
    assert np.array_equal(kept.output, image) and kept.decision.forced
    with pytest.raises(ValueError, match="method must be one of"):
        pipeline.enhance(image, "denoise", method=guard.FITTED_METHOD)  # nothing was fitted
    with pytest.raises(ValueError, match="denoising only"):
        pipeline.enhance(image, "sr_x2", method="total variation")


def test_residual_correlation_tells_noise_from_structure():
    rng = np.random.default_rng(0)
    clean = _grey()
    assert abs(guard.residual_correlation(clean + rng.normal(0, 0.05, clean.shape), clean)) < 0.05
    assert guard.residual_correlation(clean, np.full_like(clean, clean.mean())) > 0.8


def test_noise2void_fit_changes_a_copy_and_competes_with_the_rest():
    clean = _grey((96, 96))
    noisy = _noisy(clean, 0.08)
    model, _ = load_model(MODEL_NAMES["denoise"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fitted, report = selffit.fit(noisy, model, selffit.FitConfig(seconds=120.0, max_steps=6, patch=32, batch=4))
    assert report.steps == 6 and np.isfinite(report.loss_end)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())  # the bundled one is untouched
    assert any(not np.array_equal(before[k], v) for k, v in fitted.state_dict().items())
    with pytest.raises(ValueError, match="at least 48 x 48"):
        selffit.fit(noisy[:20, :20], model)
    res = pipeline.enhance(noisy, "denoise", fit_seconds=2.0)
    assert guard.FITTED_METHOD in {s.method for s in res.decision.scores}
    assert res.fit_report.steps >= 1 and "head.weight" in res.fitted_weights


def test_the_page_says_what_it_chose_and_ships_the_fitted_weights(tmp_path, monkeypatch):
    import tifffile
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    noisy = np.round(_noisy(_three_phase(), 0.1) * 65535).astype(np.uint16)
    monkeypatch.setattr("battgai.microstructure.io.demo_image", lambda shape=(256, 256), seed=0: noisy)
    monkeypatch.setattr("battgai.microstructure.enhancement.selffit.PAGE_SECONDS", 2.0)
    import streamlit as st

    st.cache_data.clear()
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    at = AppTest.from_file(str(ROOT / "pages" / "microstructure.py"), default_timeout=120).run()
    at.checkbox(key="fit_denoiser").check().run()
    at.button(key="run_enhance").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("looks segmented" in w.value and "phase levels (3)" in w.value for w in at.warning)
    stored = at.session_state["enhance"]
    with zipfile.ZipFile(io.BytesIO(stored["zip"])) as z:
        names = z.namelist()
        result = tifffile.imread(io.BytesIO(z.read("result.tif")))
    assert "fitted_denoiser.safetensors" in names and result.dtype == np.uint16
    st.cache_data.clear()


def test_the_page_forces_the_chosen_method_and_writes_it_to_the_provenance(tmp_path, monkeypatch):
    import json

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    noisy = np.round(_noisy(_grey(), 0.08) * 255).astype(np.uint8)
    monkeypatch.setattr("battgai.microstructure.io.demo_image", lambda shape=(256, 256), seed=0: noisy)
    import streamlit as st

    st.cache_data.clear()
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    at = AppTest.from_file(str(ROOT / "pages" / "microstructure.py"), default_timeout=120).run()
    assert at.selectbox(key="denoise_method").value == "Automatic (picked on the image)"
    at.selectbox(key="denoise_method").select("Total variation").run()
    at.button(key="run_enhance").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("forced by the user" in m.value for m in [*at.info, *at.warning])
    with zipfile.ZipFile(io.BytesIO(at.session_state["enhance"]["zip"])) as z:
        settings = json.loads(z.read("provenance.json"))["settings"]
    assert settings["method"] == "total variation" and settings["method_forced_by_user"] is True
    assert settings["automatic_choice"] == guard.MODEL_METHOD and "total variation" in settings["scores"]["values"]
    st.cache_data.clear()


def test_the_guard_table_flags_a_row_worse_than_its_input(tmp_path, monkeypatch):
    from battgai import bench
    from battgai.bench import microstructure_guard as guardbench

    row = {"image": "raw x", "noise": "Gaussian", "noisy": 20.0, "bundled": 31.0, "nlm": 30.0, "tv": 31.5,
           "enhanced": 31.0, "method": "bundled denoiser", "seconds": 1.0, "sigma": 0.1}
    fit = {"image": "y", "noisy": 20.0, "bundled": 30.0, "fitted": 30.2, "best_classical": 30.0, "enhanced": 30.2,
           "method": guard.FITTED_METHOD, "steps": 10, "seconds": 70.0}
    md = guardbench.markdown([row, {**row, "noise": "Poisson", "enhanced": 19.0}], fit)
    assert "noisy + 3 dB on every row: NO" in md and "best classical on every row: NO" in md
    assert "Gaussian -0.50 dB, Poisson -12.50 dB" in md and "in <= 60 s: NO" in md
    monkeypatch.setattr(bench, "BENCHMARKS_MD", tmp_path / "B.md")
    bench.write_section("microstructure", "head\n\ntail")
    bench.write_subsection("microstructure", "microstructure-guard", "first")
    bench.write_subsection("microstructure", "microstructure-guard", "second")
    text = bench.read_section("microstructure")
    assert text.startswith("head") and "second" in text and "first" not in text and text.count(":start -->") == 1


def test_super_resolution_x2_picks_the_upscaler_that_restores_the_image_best():
    from battgai.microstructure.enhancement.enhance import bicubic, skimage_upscale
    from battgai.microstructure.enhancement.evaluate import lowres_pair

    # A segmented-like image, where the net is outside its domain. (Self-similarity assumes the image looks alike
    # at two scales: on a smooth random field with one length scale near the pixel size it picks skimage and loses
    # 2.3 dB to the net; on the bench's six real image types it picked the best upscaler every time.)
    for clean in (_three_phase((192, 192)), _three_phase((256, 256), seed=4)):
        lr, hr = lowres_pair(clean, 2)
        res = pipeline.enhance(lr, "sr_x2")
        d = res.decision
        assert {s.method for s in d.scores} == {guard.SR_NET, *guard.SR_CLASSICAL.values()}
        assert d.method == max(d.scores, key=lambda s: s.est_gain_db).method
        net = load_model(MODEL_NAMES[2])[0]
        truth = {guard.SR_NET: apply_model(lr, net), guard.SR_CLASSICAL["bicubic"]: bicubic(lr, 2),
                 guard.SR_CLASSICAL["skimage"]: skimage_upscale(lr, 2)}
        true_psnr = {m: psnr_ssim(hr, v)[0] for m, v in truth.items()}
        assert psnr_ssim(hr, res.after)[0] == pytest.approx(true_psnr[d.method], abs=1e-6)
        assert true_psnr[d.method] >= max(true_psnr.values()) - 0.3
    x4 = pipeline.enhance(lr, "sr_x4")
    assert x4.method == guard.SR_NET and "not trusted" in x4.decision.notes[0]


@pytest.mark.parametrize("sigma", [0.03, 0.10])
def test_a_12_bit_scan_in_uint16_is_denoised_as_its_16_bit_copy(sigma):
    from battgai.microstructure import pipeline

    noisy = _noisy(_grey(), sigma)
    twelve = pipeline.enhance(np.rint(noisy * 4095).astype(np.uint16), "denoise")
    sixteen = pipeline.enhance(np.rint(noisy * 65535).astype(np.uint16), "denoise")
    clean = _grey()
    psnr12 = psnr_ssim(clean, twelve.output.astype(np.float32) / 4095)[0]
    psnr16 = psnr_ssim(clean, sixteen.output.astype(np.float32) / 65535)[0]
    assert twelve.method == sixteen.method != guard.NONE  # the noise is seen in both
    assert abs(psnr12 - psnr16) < 0.3 and twelve.output.max() <= 4095 and twelve.output.dtype == np.uint16


def test_the_bit_depth_bench_stores_reads_and_compares_every_container():
    from battgai.bench import microstructure_bitdepth as bench

    table = bench.rows({"grey": _grey((48, 48))})
    assert len(table) == len(bench.NOISE) * len(bench.ENCODINGS)
    assert {r["read"] for r in table if r["encoding"] == "12-bit in uint16"} == {"12-bit in uint16 (0 to 4095)"}
    md = bench.markdown(table)
    assert md.count("| grey |") == len(bench.NOISE) and "Largest 12-bit vs 16-bit difference" in md
    assert bench.encode(np.array([0.0, 1.0, 2.0]), -1000, 3000, np.int16).tolist() == [-1000, 3000, 3000]


def test_a_label_image_is_upscaled_as_labels():
    from battgai.microstructure import pipeline
    from battgai.microstructure.enhancement import guard, labels
    from battgai.microstructure.io import demo_labels

    truth = demo_labels((128, 128), seed=3).astype(np.uint8) * 100  # phases stored as 0 / 100 / 200
    coarse = labels.downscale_labels(truth, 2)
    res = pipeline.enhance(coarse, "sr_x2")
    assert res.output.dtype == np.uint8 and res.output.shape == truth.shape
    assert set(np.unique(res.output)) <= set(np.unique(coarse))  # the same phase values, nothing between them
    assert res.decision.method == guard.SR_LABELS and res.decision.in_model_domain
    scores = labels.label_scores(res.output, truth)
    grey = labels.label_scores(labels.upscale_labels(coarse, 2, "bicubic then rounded"), truth)
    assert scores["mean_iou"] > grey["mean_iou"] and scores["max_vf_error"] <= grey["max_vf_error"]


def test_label_tools_reject_and_score_as_documented():
    from battgai.microstructure.enhancement import labels

    grey = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    assert not labels.is_label_image(grey) and labels.is_label_image(np.array([[0, 2], [2, 5]]))
    a = np.zeros((16, 16), np.uint8)
    a[4:12, 4:12] = 1
    assert labels.label_scores(a, a) == {"mean_iou": 1.0, "boundary_f1": 1.0, "max_vf_error": 0.0,
                                         "mean_ssa_rel_error": 0.0}
    shifted = np.roll(a, 3, axis=1)
    assert labels.boundary_f1(shifted, a) < 0.6 and labels.boundary_f1(np.roll(a, 1, axis=1), a) > 0.6
    assert labels.upscale_labels(a, 3, "nearest").shape == (48, 48)
    with pytest.raises(ValueError, match="method"):
        labels.upscale_labels(a, 2, "magic")
    assert labels.downscale_labels(np.kron(a, np.ones((2, 2), np.uint8)), 2).tolist() == a.tolist()
