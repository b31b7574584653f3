"""Every enhancement method on a stack: progress per slice, stopped by its callback, bounded memory, same numbers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import skimage.restoration
from scipy import ndimage as ndi

from battgai.microstructure import pipeline
from battgai.microstructure.enhancement import guard
from battgai.microstructure.enhancement.enhance import MODEL_NAMES, apply_model, load_model
from battgai.microstructure.enhancement.stack import class_medians, map_slices
from battgai.microstructure.io import from_float, to_float


class Stop(Exception):
    """What the page's Stop raises from a progress callback (Streamlit's own stop exception)."""


def _stack(z: int = 5, side: int = 64, sigma: float = 0.06, seed: int = 0) -> np.ndarray:
    """A noisy grey stack in [0, 1], each slice a smooth texture (no plateaus), float32."""
    rng = np.random.default_rng(seed)
    clean = ndi.gaussian_filter(rng.normal(size=(z, side, side)), (0, 3, 3))
    clean = 0.1 + 0.8 * (clean - clean.min()) / np.ptp(clean)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)


def _stopping_at(k: int, calls: list):
    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == k:
            raise Stop
    return progress


@pytest.fixture(scope="module")
def denoiser():
    return load_model(MODEL_NAMES["denoise"], device="cpu")[0]


def _counting(monkeypatch, name: str) -> list:
    """Count calls of a skimage denoiser (each call is one slice's work)."""
    original, calls = getattr(skimage.restoration, name), []

    def counted(x, *args, **kwargs):
        calls.append(x.shape)
        return original(x, *args, **kwargs)

    monkeypatch.setattr(skimage.restoration, name, counted)
    return calls


@pytest.mark.parametrize("method", ["nlm", "tv"])
def test_classical_methods_report_each_slice_and_equal_their_2d_results(method):
    stack = _stack()
    fn = {"nlm": lambda x, **kw: guard.non_local_means(x, 0.06, **kw),
          "tv": lambda x, **kw: guard.total_variation(x, **kw)}[method]
    calls = []
    out = fn(stack, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 5) for k in range(1, 6)]
    np.testing.assert_array_equal(out, np.stack([fn(s) for s in stack]))
    assert out.dtype == np.float32


@pytest.mark.parametrize(("method", "skimage_fn"), [("non-local means", "denoise_nl_means"),
                                                    ("total variation", "denoise_tv_chambolle")])
def test_a_raising_callback_stops_a_classical_method_after_that_slice(monkeypatch, method, skimage_fn):
    stack = _stack(z=8)
    fn = {"denoise_nl_means": lambda x, **kw: guard.non_local_means(x, 0.06, **kw),
          "denoise_tv_chambolle": lambda x, **kw: guard.total_variation(x, **kw)}[skimage_fn]
    work = _counting(monkeypatch, skimage_fn)
    calls = []
    with pytest.raises(Stop):
        fn(stack, progress=_stopping_at(3, calls))
    assert calls == [(1, 8), (2, 8), (3, 8)] and len(work) == 3


def test_the_nets_report_at_least_once_per_slice_and_stop_within_one(denoiser):
    stack = _stack(z=6, side=80)
    calls = []
    with pytest.raises(Stop):
        apply_model(stack, denoiser, tile=40, batch=4, progress=_stopping_at(4, calls))
    # 4 tiles per slice, one batch: the run ends with the slice whose progress raised.
    assert calls == [(4, 24)]
    calls = []
    out = apply_model(stack, denoiser, tile=40, batch=4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4 * k, 24) for k in range(1, 7)]
    np.testing.assert_array_equal(out[2], apply_model(stack[2], denoiser, tile=40, batch=4))


def test_an_integer_stack_is_read_on_the_stack_range_slice_by_slice(denoiser):
    # A 12-bit stack whose first slice stays under 256: per-slice ranges would read it as 8-bit.
    stack = (_stack(z=3) * 4095).astype(np.uint16)
    stack[0] //= 16
    out = apply_model(stack, denoiser, tile=None)
    np.testing.assert_allclose(out, apply_model(to_float(stack), denoiser, tile=None), atol=0)
    whole = ((stack.astype(np.float64) - 0) / 4095).astype(np.float32)
    np.testing.assert_array_equal(to_float(stack), whole)
    back = np.clip(np.rint(np.asarray(whole, np.float64) * 4095), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(from_float(whole, like=stack), back)


@pytest.mark.parametrize("method", [guard.NONE, guard.CLASSICAL[0], guard.CLASSICAL[1], guard.PHASE_LEVELS,
                                    guard.MODEL_METHOD])
def test_every_denoising_method_of_the_page_reports_each_slice_and_stops(denoiser, method):
    stack = _stack(z=4, side=64)
    calls = []
    res = pipeline.enhance(stack, "denoise", method=method, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 4
    slices_done = [d * 4 // t for d, t in calls]
    assert sorted(set(slices_done)) == [1, 2, 3, 4]  # every slice reported (nets: per tile batch)
    assert res.after.shape == stack.shape
    calls = []
    with pytest.raises(Stop):
        pipeline.enhance(stack, "denoise", method=method, progress=_stopping_at(1, calls))
    assert len(calls) == 1


def test_phase_levels_on_a_stack_equal_the_whole_stack_recipe():
    rng = np.random.default_rng(3)
    field = ndi.gaussian_filter(rng.normal(size=(4, 72, 72)), (0, 4, 4))
    three = np.digitize(field, np.quantile(field, [0.4, 0.75])).astype(np.float32) / 2
    noisy = np.clip(three + rng.normal(0, 0.05, three.shape), 0, 1).astype(np.float32)
    decision = guard.Decision(0.05, 3, 1.0, f"{guard.PHASE_LEVELS} (3)", (), ())
    out = guard._apply(noisy, decision, model=None)
    smoothed = np.stack([guard.non_local_means(s, 0.05) for s in noisy])
    cls = np.digitize(smoothed, guard.phase_levels(smoothed)[2])
    expected = np.empty_like(noisy)
    for i in np.unique(cls):
        expected[cls == i] = np.median(noisy[cls == i])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("task", ["sr_x2", "sr_x4"])
def test_super_resolution_of_a_stack_reports_each_slice_and_stops(task):
    stack = _stack(z=3, side=48)
    calls = []
    res = pipeline.enhance(stack, task, progress=lambda d, t: calls.append((d, t)))
    scale = 2 if task == "sr_x2" else 4
    assert res.after.shape == (3, 48 * scale, 48 * scale) and calls[-1] == (calls[-1][1], calls[-1][1])
    assert len(calls) >= 3
    calls = []
    with pytest.raises(Stop):
        pipeline.enhance(stack, task, progress=_stopping_at(1, calls))
    assert len(calls) == 1


def test_map_slices_writes_one_float32_output_and_checks_the_shape():
    out = map_slices(lambda s: np.repeat(np.repeat(s, 2, 0), 2, 1), np.ones((2, 3, 3), np.uint8), scale=2)
    assert out.shape == (2, 6, 6) and out.dtype == np.float32
    with pytest.raises(ValueError, match="2D image or a 3D stack"):
        map_slices(lambda s: s, np.ones((2, 2, 2, 2)))


def _peak_copies(fn, stack: np.ndarray) -> float:
    """Peak of numpy's allocations during ``fn()``, in float32 copies of ``stack`` (tracemalloc sees numpy)."""
    fn()  # skimage loads its submodules on first use: their import is no cost of the stack
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / (stack.size * 4)


def test_a_stack_costs_its_result_and_one_slice_not_float64_copies():
    stack = _stack(z=64, side=96)
    assert _peak_copies(lambda: guard.non_local_means(stack, 0.06), stack) < 1.4
    assert _peak_copies(lambda: guard.total_variation(stack), stack) < 1.4
    half = stack * 0.5
    assert _peak_copies(lambda: guard.residual_correlation(stack, half), stack) < 0.4
    ints = (stack * 4095).astype(np.uint16)
    assert _peak_copies(lambda: to_float(ints), stack) < 1.2
    assert _peak_copies(lambda: from_float(stack, like=ints), stack) < 0.7


class _Bar:
    """Stands in for ``st.progress``: records each text, and raises Streamlit's stop at ``stop_at`` (Stop pressed)."""

    def __init__(self, texts: list, stop_at: str | None):
        self.texts, self.stop_at = texts, stop_at

    def progress(self, value: float, text: str = "") -> None:
        self.texts.append(text)
        if text == self.stop_at:
            from streamlit.runtime.scriptrunner_utils.exceptions import StopException

            raise StopException

    def empty(self) -> None:
        pass


@pytest.mark.parametrize("stop_at", [None, "Enhancing slice 3/8"])
def test_the_page_shows_each_slice_and_stop_ends_the_run_as_stopped(tmp_path, monkeypatch, stop_at):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from battgai.core.runs import RunStore
    from tests.conftest import ROOT

    # Slices larger than the decision's scoring crop (guard.SCORE_SIDE): its calls are told apart by their shape.
    stack = np.round(_stack(z=8, side=guard.SCORE_SIDE + 8) * 255).astype(np.uint8)
    monkeypatch.setattr("battgai.microstructure.io.demo_labels", lambda shape=(64, 64, 64), seed=0: stack)
    monkeypatch.setattr("battgai.microstructure.io.demo_image", lambda shape=(256, 256), seed=0: stack[0])
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    texts: list[str] = []
    monkeypatch.setattr(st, "progress", lambda value, text="": _Bar(texts, stop_at))
    work = _counting(monkeypatch, "denoise_tv_chambolle")
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "microstructure.py"), default_timeout=120).run()
    at.radio(key="demo_kind").set_value("3D segmented volume").run()
    at.toggle(key="whole_stack").set_value(True).run()
    at.selectbox(key="denoise_method").select("Total variation").run()
    at.button(key="run_enhance").click().run()
    assert not at.exception, [e.value for e in at.exception]
    slices = [t for t in texts if t.startswith("Enhancing slice")]
    [run] = RunStore(tmp_path / "home").list("microstructure")
    if stop_at is None:
        assert slices == [f"Enhancing slice {k}/8" for k in range(1, 9)] and run.status == "finished"
    else:
        assert slices[-1] == stop_at and run.status == "stopped" and "enhance" not in at.session_state
        assert sum(shape == stack.shape[1:] for shape in work) == 3  # no slice after the Stop
    st.cache_data.clear()


def test_a_label_volume_is_bounded_by_its_upscaled_volume_not_its_slices(monkeypatch):
    # Label volumes are upscaled along z too: x2 makes 8 times the voxels, which the limit must count.
    volume = np.zeros((48, 48, 48), np.uint8)
    volume[:, :24] = 1
    monkeypatch.setattr(pipeline, "MAX_OUTPUT_PIXELS", volume.size * 4)
    with pytest.raises(ValueError, match="the limit is"):
        pipeline.enhance(volume, "sr_x2")
    assert pipeline.enhance(_stack(z=48, side=48), "sr_x2").after.shape == (48, 96, 96)


def test_class_medians_equal_numpys_median_without_copying_the_classes():
    rng = np.random.default_rng(0)
    values = np.array([-0.5, 0.0, 1e-30, 0.25, 3e5], np.float32)
    for trial in range(60):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        image = [rng.normal(size=shape).astype(np.float32),  # ties below: plateaus, 12-bit steps, signs, extremes
                 rng.integers(0, 4, shape).astype(np.float32) / 3,
                 np.round(rng.random(shape) * 4095).astype(np.float32) / 4095, rng.choice(values, shape)][trial % 4]
        classes = rng.integers(0, 3, shape).astype(np.uint8)
        expected = [np.median(image[classes == c]) if (classes == c).any() else None for c in range(4)]
        assert class_medians(image, classes, 4) == expected


def test_phase_levels_of_a_stack_hold_its_classes_in_uint8_and_copy_no_class():
    stack = _stack(z=96, side=256)
    smoothed = ndi.uniform_filter(stack, (1, 5, 5))
    thresholds = guard.phase_levels(smoothed)[2]
    # The radix select's histograms are fixed (about 7 MB for three classes), whatever the stack's size.
    histograms = (4 * (len(thresholds) + 1) + 1) * 2**16 * 8 / (stack.size * 4)
    assert _peak_copies(lambda: guard.to_levels(stack, smoothed, thresholds, out=smoothed), stack) < 0.4 + histograms


def test_the_stack_bench_times_stops_and_measures_one_method(tmp_path):
    from battgai.bench import microstructure_stack as bench

    path = tmp_path / "stack.npy"
    np.save(path, bench.synthetic_stack(6, side=64))
    row = bench.worker("sr_x2", "bicubic", "alone", str(path))
    assert row["stopped"] and row["stopped_after_slices"] >= bench.STOP_SLICE - 1
    assert row["per_slice"] > 0 and row["peak_mib"] >= 0 and row["used"] == "bicubic"
    assert bench._held(row) == 1.0 and bench._held({**row, "how": "page"}) == 1.75
