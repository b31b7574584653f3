"""Nets, tiled inference, bundled weights, generator, training step and the page pipeline."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from battgai.microstructure import io as msio
from battgai.microstructure import pipeline, train
from battgai.microstructure.enhancement import degrade, enhance, evaluate
from battgai.microstructure.enhancement.model import EnhanceConfig, EnhanceNet
from battgai.microstructure.generation import generator, genfit, slicegan
from battgai.uploads import read_image


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return msio.demo_image((96, 128), seed=3)


def test_untrained_net_returns_its_base(clean):
    # The tail is zero-initialised: denoiser = identity, SR = bicubic.
    assert np.allclose(enhance.apply_model(clean, EnhanceNet(EnhanceConfig(scale=1, channels=4, n_blocks=1))),
                       clean, atol=1e-6)
    up = enhance.apply_model(clean, EnhanceNet(EnhanceConfig(scale=2, channels=4, n_blocks=1)), tile=None)
    # The net pads by reflection, the bicubic baseline clamps: compare away from the border.
    np.testing.assert_allclose(up[8:-8, 8:-8], enhance.bicubic(clean, 2)[8:-8, 8:-8], atol=1e-5)


def test_config_rejects_other_scales():
    with pytest.raises(ValueError, match="scale"):
        EnhanceConfig(scale=3)


@pytest.mark.parametrize("name", ["microstructure_sr_x4", "microstructure_denoise"])
def test_tiled_equals_whole_image(clean, name):
    model, _ = enhance.load_model(name, device="cpu")
    whole = enhance.apply_model(clean, model, tile=None)
    tiled = enhance.apply_model(clean, model, tile=40)  # 40 does not divide 96 or 128: ragged edge tiles
    assert tiled.shape == whole.shape
    psnr, _ = evaluate.psnr_ssim(whole, tiled) if not np.array_equal(whole, tiled) else (np.inf, 1.0)
    assert psnr > 60  # the target is "within 0.1 dB"; exact tiling gives float rounding only
    assert np.abs(whole - tiled).max() < 1e-4


def test_stacks_are_processed_slice_by_slice(clean):
    model, _ = enhance.load_model("microstructure_sr_x2", device="cpu")
    stack = np.stack([clean[:48, :48], clean[48:, :48]])
    done = []
    out = enhance.apply_model(stack, model, progress=lambda d, t: done.append((d, t)))
    assert out.shape == (2, 96, 96) and done == [(1, 2), (2, 2)]
    np.testing.assert_allclose(out[1], enhance.apply_model(stack[1], model), atol=1e-6)


def test_progress_comes_per_batch_of_tiles_so_a_large_image_can_be_stopped(clean):
    # One call per image made a 4096^2 enhancement unstoppable for its whole run in the page.
    model, _ = enhance.load_model("microstructure_denoise", device="cpu")
    done = []
    enhance.apply_model(np.tile(clean, (3, 3))[:300, :300], model, tile=64, batch=4,
                        progress=lambda d, t: done.append((d, t)))
    assert done == [(k, 25) for k in (4, 8, 12, 16, 20, 24, 25)]


def test_bundled_denoiser_beats_the_noisy_input(clean):
    noisy = degrade.add_noise(clean, np.random.default_rng(0), sigma=0.08)
    out = enhance.denoise(noisy)
    assert evaluate.psnr_ssim(clean, out)[0] > evaluate.psnr_ssim(clean, noisy)[0] + 3


@pytest.mark.parametrize("scale", [2, 4])
def test_bundled_sr_beats_bicubic(clean, scale):
    lr, hr = evaluate.lowres_pair(clean, scale)
    assert enhance.upscale(lr, scale).shape == hr.shape
    assert evaluate.psnr_ssim(hr, enhance.upscale(lr, scale))[0] > evaluate.psnr_ssim(hr, enhance.bicubic(lr, scale))[0]


def test_upscale_checks_scale_and_model():
    model = EnhanceNet(EnhanceConfig(scale=2, channels=2, n_blocks=0))
    with pytest.raises(ValueError, match="2 or 4"):
        enhance.upscale(np.zeros((8, 8)), 3, model)
    with pytest.raises(ValueError, match="upscales by 2"):
        enhance.upscale(np.zeros((8, 8)), 4, model)
    with pytest.raises(ValueError, match="scale-1"):
        enhance.denoise(np.zeros((8, 8)), model)


def test_training_steps_reduce_nothing_to_nan_and_change_weights(clean):
    config = train.TrainConfig(model="sr_x2", steps=3, batch=2, channels=4, n_blocks=1)
    model, steps = train.train_enhancer(config, [clean], log=lambda _: None)
    assert steps == 3
    assert torch.count_nonzero(model.tail.weight) > 0
    noisy, target = train.make_pair(clean, 2, 64, np.random.default_rng(0))
    assert noisy.shape == (32, 32) and target.shape == (64, 64)


def test_training_can_start_from_given_weights_and_weight_the_first_image(clean):
    start = EnhanceNet(EnhanceConfig(scale=1, channels=4, n_blocks=1))
    torch.nn.init.normal_(start.tail.weight)
    # raw_fraction 1: every patch from the first image, so the NaN image is never drawn.
    config = train.TrainConfig(model="denoise", steps=3, batch=2, channels=4, n_blocks=1, lr=1e-5, raw_fraction=1.0)
    model, _ = train.train_enhancer(config, [clean, np.full((64, 64), np.nan, np.float32)], log=lambda _: None,
                                    init=start.state_dict())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Three steps at lr 1e-5 barely move the weights it started from.
    assert torch.allclose(model.tail.weight, start.tail.weight, atol=1e-3)
    with pytest.raises(ValueError, match="at least 48 px"):
        train.train_enhancer(config, [clean, np.zeros((16, 16), np.float32)], log=lambda _: None)


# --- generator ---------------------------------------------------------------------------------

def test_bundled_generator_hits_porosity_and_is_seeded():
    model = generator.load()
    a = generator.sample(model, 0.35, (32, 32, 32), seed=4)
    b = generator.sample(model, 0.35, (32, 32, 32), seed=4)
    c = generator.sample(model, 0.35, (32, 32, 32), seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(float((a == 0).mean()) - 0.35) < 1e-3
    assert set(np.unique(a)) == {0, 1, 2}
    assert generator.sample(model, 0.5, (48, 64), seed=0).shape == (48, 64)


def test_generator_checks_arguments():
    model = generator.load()
    with pytest.raises(ValueError, match="porosity"):
        generator.sample(model, 0.99, (32, 32, 32))
    with pytest.raises(ValueError, match="sides"):
        generator.sample(model, 0.4, (8, 8, 8))


def test_fit_reproduces_two_point_correlation_of_its_data():
    real = msio.demo_labels((48, 48, 48), porosity=0.45, seed=0)
    model = genfit.fit(real, r_max=12, scale_grid=(1.0,), smooth_grid=(0.5, 1.0), bias_grid=(0.0, -1.0),
                       terms=("surface area", "NMC surface area"), side=24, log=lambda _: None)
    assert model.config.smooth_nmc in (0.5, 1.0) and model.config.pore_bias in (0.0, -1.0)
    gen = generator.sample(model, float((real == 0).mean()), (48, 48, 48), seed=1)
    gaps = generator.compare_pore_metrics([real], [gen], r_max=12)
    assert gaps["porosity_abs_error"] < 1e-3
    assert gaps["s2_l1_gap"] < 0.02


# --- SliceGAN -----------------------------------------------------------------------------------

def test_bundled_slicegan_samples_three_phases_at_the_target_porosity():
    model = slicegan.load()
    a = slicegan.sample(model, 0.4, (32, 40, 48), seed=3)
    assert a.shape == (32, 40, 48) and a.dtype == np.uint8
    assert set(np.unique(a)) == {0, 1, 2}
    assert abs(float((a == 0).mean()) - 0.4) < 2e-3
    np.testing.assert_array_equal(a, slicegan.sample(model, 0.4, (32, 40, 48), seed=3))
    assert not np.array_equal(a, slicegan.sample(model, 0.4, (32, 40, 48), seed=4))
    # A trained generator makes NMC the main solid phase, as in the training volume (NMC : CBD ~ 0.73).
    assert (a == 1).mean() > (a == 2).mean()
    flat = slicegan.sample(model, 0.3, (40, 24), seed=0)
    assert flat.shape == (40, 24) and abs(float((flat == 0).mean()) - 0.3) < 0.01


def test_slicegan_output_size_and_arguments():
    model = slicegan.build_generator(slicegan.SliceGANConfig(nz=2, channels=(4, 4, 4)))
    assert model(torch.zeros(1, 2, 4, 4, 5)).shape == (1, 3, 32, 32, 48)  # 16 L - 32 per side
    assert slicegan.latent_side(256) == 18 and 16 * slicegan.latent_side(100) - 32 >= 100
    with pytest.raises(ValueError, match="porosity"):
        slicegan.sample(model, 0.99, (32, 32, 32))
    with pytest.raises(ValueError, match="sides"):
        slicegan.sample(model, 0.4, (8, 300, 8))
    with pytest.raises(ValueError, match="hidden channel"):
        slicegan.SliceGANConfig(channels=(4, 4))


def test_slab_decoding_equals_the_whole_volume():
    torch.manual_seed(0)
    model = slicegan.build_generator(slicegan.SliceGANConfig(nz=4, channels=(8, 8, 4)))
    for module in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    shape = (100, 20, 17)  # 100 voxels = 3 slabs
    latent = [slicegan.latent_side(s) for s in shape]
    z = torch.randn((1, 4, *latent), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        whole = torch.log_softmax(model.eval()(z)[0], dim=0).numpy()
    start = [(16 * n - 32 - s) // 2 for n, s in zip(latent, shape, strict=True)]
    crop = tuple(slice(a, a + s) for a, s in zip(start, shape, strict=True))
    np.testing.assert_allclose(slicegan.probabilities(model, shape, seed=7), whole[(slice(None), *crop)], atol=1e-5)


def test_pore_shift_is_monotonic_and_keeps_the_solid_ranking():
    logp = np.log(np.random.default_rng(0).dirichlet((1, 1, 1), size=(20, 20, 20))).transpose(3, 0, 1, 2)
    fractions = [float((slicegan.shift_to_porosity(logp, p) == 0).mean()) for p in (0.1, 0.5, 0.9)]
    assert fractions == pytest.approx([0.1, 0.5, 0.9], abs=1e-3)
    labels = slicegan.shift_to_porosity(logp, 0.5)
    solid = labels > 0
    np.testing.assert_array_equal(labels[solid], 1 + np.argmax(logp[1:], axis=0)[solid])


def test_slicegan_slices_and_a_critic_step():
    rng = np.random.default_rng(0)
    vol = msio.demo_labels((40, 36, 48), seed=0)
    real = train._one_hot_slices(vol, 1, 5, 32, rng)
    assert real.shape == (5, 3, 32, 32) and torch.all(real.sum(1) == 1)
    fake = torch.softmax(torch.randn(2, 3, 32, 32, 32), dim=1)
    assert train._fake_slices(fake, 2, 4, rng).shape == (8, 3, 32, 32)
    critic = slicegan.build_critic()
    assert critic(real).shape == (5,)


# --- pipeline (the page's backend calls) ------------------------------------------------------

def test_pipeline_enhance_and_size_limit(clean, monkeypatch):
    res = pipeline.enhance((clean * 255).astype(np.uint8), "sr_x2")
    assert res.after.shape == (192, 256) and res.model == "microstructure_sr_x2"
    assert {row["metric"] for row in res.table} >= {"mean", "noise sigma (estimate)"}
    monkeypatch.setattr(pipeline, "MAX_OUTPUT_PIXELS", 1000)
    with pytest.raises(ValueError, match="limit is 1,000"):
        pipeline.enhance(clean, "sr_x4")


def test_pipeline_segment_labels_and_grey():
    lab = msio.demo_labels((32, 32, 32), seed=1)
    res = pipeline.segment_and_measure(lab, is_labels=True)
    assert [p.phase for p in res.phases] == [0, 1, 2]
    assert sum(p.volume_fraction for p in res.phases) == pytest.approx(1.0)
    grey = msio.render_grey(msio.demo_labels((64, 64), seed=2))
    res2 = pipeline.segment_and_measure(grey, thresholds=[0.3, 0.6])
    assert res2.thresholds == (0.3, 0.6) and res2.labels.max() == 2


def test_exports_round_trip_through_the_upload_validator():
    lab = msio.demo_labels((16, 20, 24), seed=0)
    np.testing.assert_array_equal(read_image(pipeline.to_tiff(lab)), lab)
    png = read_image(pipeline.to_png(lab[0]))
    assert png.shape == (20, 24) and png.max() == 255
    assert pipeline.to_csv([{"a": 1}]).decode().startswith("a")
    assert io.BytesIO(pipeline.to_tiff(lab.astype(np.float32))).getbuffer().nbytes > 0


def test_generate_result_carries_provenance_fields():
    res = pipeline.generate(0.4, (32, 32, 32), seed=2)
    assert res.sha256 and res.model == generator.MODEL_NAME
    assert res.phases[0].volume_fraction == pytest.approx(0.4, abs=1e-3)
    gan = pipeline.generate(0.4, (32, 32), seed=2, model_name=slicegan.MODEL_NAME)
    assert gan.model == slicegan.MODEL_NAME and gan.labels.shape == (32, 32)
    with pytest.raises(ValueError, match="unknown generator"):
        pipeline.generate(0.4, (32, 32), model_name="nope")


# --- scoring helpers ---------------------------------------------------------------------------

def test_scoring_helpers(clean):
    lr, hr = evaluate.lowres_pair(clean, 4)
    assert lr.shape == (24, 32) and hr.shape == (96, 128)
    assert enhance.skimage_upscale(lr, 4).shape == hr.shape
    with pytest.raises(ValueError, match="same shape"):
        evaluate.psnr_ssim(hr, lr)
    from battgai.bench import microstructure as bench

    rows = [("a", "m1", 30.0, 0.9), ("b", "m1", 32.0, 0.7), ("a", "m2", 20.0, 0.5)]
    assert bench._means(rows, (1,)) == {("m1",): (31.0, 0.8), ("m2",): (20.0, 0.5)}
