"""One call per page task: enhance, segment + measure, generate. Results are small dataclasses.

These functions hold no science of their own: they chain the modules of this package, check
sizes before heavy work and return what the page renders and offers for download.
"""

from __future__ import annotations

import dataclasses
import io as _io
import math
import time
from collections.abc import Callable

import numpy as np

from battgai.microstructure.analysis import metrics, segment
from battgai.microstructure.enhancement import guard
from battgai.microstructure.generation import fusion
from battgai.microstructure.io import from_float, to_float

Progress = Callable[[int, int], None]

#: Largest enhancement output, in pixels (x4 of a 2048 x 2048 image is 67 M).
MAX_OUTPUT_PIXELS = 70_000_000
TASKS = ("denoise", "sr_x2", "sr_x4")
#: Volumes larger than this per side are centre-cropped before measuring (marching cubes, local
#: thickness and S2 of 256^3 take tens of seconds).
MAX_METRICS_SIDE = 128
#: Side of the central crop the before / after table is measured on.
SUMMARY_SIDE = 512


@dataclasses.dataclass(frozen=True)
class EnhanceResult:
    before: np.ndarray  # float32 in [0, 1], 2D or 3D
    after: np.ndarray
    task: str
    model: str
    sha256: str
    seconds: float
    table: list[dict[str, object]]  # rows of the before / after metrics table
    output: np.ndarray | None = None  # ``after`` in the input's dtype and intensity scale (what is downloaded)
    decision: guard.Decision | None = None  # denoising: noise estimate, method used and why
    residual_correlation: float = math.nan  # denoising: lag-1 correlation of before - after (0 = noise only)
    fit_report: object | None = None  # selffit.FitReport of "fit to my image"
    fitted_weights: dict[str, np.ndarray] | None = None  # the denoiser fitted to this image (EnhanceNet state)

    @property
    def method(self) -> str:
        return self.decision.method if self.decision is not None else self.model


@dataclasses.dataclass(frozen=True)
class SegmentResult:
    image: np.ndarray  # float32 in [0, 1]
    labels: np.ndarray  # uint8, 0 = darkest phase
    thresholds: tuple[float, ...]
    phases: list[metrics.PhaseMetrics]
    s2: dict[int, tuple[np.ndarray, np.ndarray]]  # phase -> (r, S2)
    sizes: dict[int, tuple[np.ndarray, np.ndarray]]  # phase -> (radius, fraction)
    notes: tuple[str, ...]  # crops applied, for the user


@dataclasses.dataclass(frozen=True)
class GenerateResult:
    labels: np.ndarray
    porosity: float
    seed: int
    model: str
    sha256: str
    seconds: float
    phases: list[metrics.PhaseMetrics]
    notes: tuple[str, ...]


def _metrics_crop(shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Centre crop of a volume to :data:`MAX_METRICS_SIDE` per side, or None when it fits."""
    if len(shape) != 3 or max(shape) <= MAX_METRICS_SIDE:
        return None
    return tuple(slice((s - min(s, MAX_METRICS_SIDE)) // 2, (s - min(s, MAX_METRICS_SIDE)) // 2
                       + min(s, MAX_METRICS_SIDE)) for s in shape)


def _crop_note(shape: tuple[int, ...]) -> str:
    return (f"The volume was centre-cropped to {shape} for the metrics (max side {MAX_METRICS_SIDE}) "
            "to keep them interactive.")


def _scale_of(task: str) -> int:
    return {"denoise": 1, "sr_x2": 2, "sr_x4": 4}[task]


def _summary(image: np.ndarray, thresholds: np.ndarray | None, pixel_scale: float) -> dict[str, float]:
    from skimage.restoration import estimate_sigma

    out = {"mean": float(image.mean()), "std": float(image.std()),
           "noise sigma (estimate)": float(estimate_sigma(image))}
    if thresholds is not None:
        labels = segment.apply_thresholds(image, thresholds)
        for p, name in enumerate(("dark", "mid", "bright")):
            out[f"{name} phase fraction"] = metrics.volume_fraction(labels, p)
            out[f"{name} phase perimeter / area (1/input px)"] = (
                metrics.specific_surface_area(labels, p) * pixel_scale)
    return out


def compare_table(before: np.ndarray, after: np.ndarray, scale: int = 1) -> list[dict[str, object]]:
    """Before / after rows: grey statistics, noise estimate and a 3-phase split with *shared* thresholds.

    Measured on the central slice and a central crop of at most :data:`SUMMARY_SIDE` input pixels
    (the matching ``scale`` times larger crop of ``after``), so the table stays fast for big
    results. The multi-Otsu thresholds of the input are applied to both images, so phase
    fractions and perimeters change only because the image changed.
    """
    b = before if before.ndim == 2 else before[before.shape[0] // 2]
    a = after if after.ndim == 2 else after[after.shape[0] // 2]
    h, w = min(b.shape[0], SUMMARY_SIDE), min(b.shape[1], SUMMARY_SIDE)
    y0, x0 = (b.shape[0] - h) // 2, (b.shape[1] - w) // 2
    b = b[y0:y0 + h, x0:x0 + w]
    a = a[y0 * scale:(y0 + h) * scale, x0 * scale:(x0 + w) * scale]
    try:
        thresholds = segment.multiotsu_thresholds(b, 3)
    except ValueError:  # too few grey levels for three phases: statistics only
        thresholds = None
    before_s, after_s = _summary(b, thresholds, 1.0), _summary(a, thresholds, float(scale))
    return [{"metric": k, "before": before_s[k], "after": after_s[k]} for k in before_s]


def enhance(image: np.ndarray, task: str, progress: Progress | None = None, tile: int = 256,
            fit_seconds: float = 0.0, fit_progress: Progress | None = None, method: str = guard.AUTO) -> EnhanceResult:
    """Denoise (``task="denoise"``) or super-resolve (``"sr_x2"``, ``"sr_x4"``) a 2D image or stack.

    Denoising picks its method on the image itself (:mod:`battgai.microstructure.enhancement.guard`); with
    ``fit_seconds`` > 0 a copy of the denoiser is first fitted to the image by Noise2Void
    (:mod:`battgai.microstructure.enhancement.selffit`) and competes with the others. ``method`` forces a
    denoising method (:data:`guard.METHODS`). The result's ``output`` has the input's dtype and
    intensity scale.

    Raises
    ------
    ValueError
        Unknown task or method, a method forced on super-resolution, or an output above
        :data:`MAX_OUTPUT_PIXELS` (the message names the limit).
    """
    from battgai.microstructure.enhancement import enhance as enh
    from battgai.microstructure.enhancement import labels

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if method != guard.AUTO and task != "denoise":
        raise ValueError(f"a method can be forced for denoising only, not for {task!r}")
    scale = _scale_of(task)
    source = np.asarray(image)
    as_labels = scale > 1 and labels.is_label_image(source)
    # Grey stacks are upscaled in-plane; a label volume along z too (its phases' 3D signed distances).
    out_pixels = source.size * scale ** (3 if as_labels and source.ndim == 3 else 2)
    if out_pixels > MAX_OUTPUT_PIXELS:
        raise ValueError(
            f"the result would have {out_pixels:,} pixels; the limit is {MAX_OUTPUT_PIXELS:,}. "
            "Crop the image or process a single slice."
        )
    image = to_float(source)
    model, card = enh.load_model(enh.MODEL_NAMES["denoise" if scale == 1 else scale])
    t0 = time.perf_counter()
    decision, residual, fitted, report = None, math.nan, None, None
    if as_labels:
        # Phase numbers are not intensities: interpolating them invents phases on every boundary.
        out = labels.upscale_labels(source, scale, progress=progress)
        values = np.unique(source)
        decision = guard.Decision(math.nan, len(values), 1.0, guard.SR_LABELS, (), (
            f"This is a label image ({len(values)} phases: values {', '.join(f'{v:g}' for v in values)}): it was "
            "upscaled as labels, each phase's signed distance to its boundary interpolated and the largest kept, "
            "so the result holds the same phase values and no grey levels between them (docs/BENCHMARKS.md: "
            "label images upscaled as labels).",), "label upscaling")
        after = to_float(out)
        return EnhanceResult(image, after, task, card.name, card.sha256, time.perf_counter() - t0,
                             compare_table(image, after, scale), out, decision, residual, None, None)
    if scale == 1:  # the method is chosen on the image itself (guard), so the result is never worse than the input
        if fit_seconds > 0:
            from battgai.microstructure.enhancement import selffit

            fitted, report = selffit.fit(image, model, selffit.FitConfig(seconds=fit_seconds), fit_progress)
        after, decision = guard.denoise(image, model, fitted, progress=progress, method=method)
        residual = guard.residual_correlation(image, after)
    else:  # the upscaler is chosen by self-similarity where that test is trusted (guard.SR_SELF_TEST_SCALES)
        after, decision = guard.upscale(image, model, scale, progress=progress, tile=tile)
    seconds = time.perf_counter() - t0
    return EnhanceResult(image, after, task, card.name, card.sha256, seconds, compare_table(image, after, scale),
                         from_float(after, like=source), decision, residual, report,
                         None if fitted is None else {k: v.cpu().numpy() for k, v in fitted.state_dict().items()})


def segment_and_measure(
    image: np.ndarray, classes: int = 3, thresholds: list[float] | None = None, is_labels: bool = False,
    with_tortuosity: bool = False, max_side: int = metrics.TORTUOSITY_MAX_SIDE, progress: Progress | None = None,
) -> SegmentResult:
    """Segment a grey image (multi-Otsu or given thresholds), or take labels as they are, and measure.

    Parameters
    ----------
    is_labels : bool
        The input is already segmented: phases are its distinct values, numbered in order.
    with_tortuosity : bool
        Also solve the tortuosity factor per phase and axis (slow; volumes cropped to ``max_side``).
    """
    from battgai.microstructure.io import phase_labels

    if is_labels:
        labels, used = phase_labels(image), ()
        img = to_float(labels.astype(np.float32) / max(int(labels.max()), 1))
    else:
        img = to_float(image)
        used = tuple(float(t) for t in (thresholds if thresholds is not None
                                        else segment.multiotsu_thresholds(img, classes)))
        labels = segment.apply_thresholds(img, used)
    notes: list[str] = []
    crop = _metrics_crop(labels.shape)
    if crop is not None:
        labels, img = labels[crop], img[crop]
        notes.append(_crop_note(labels.shape))
    phases = metrics.phase_metrics(labels, with_tortuosity=with_tortuosity, max_side=max_side, progress=progress)
    r_max = max(1, min(min(labels.shape) // 4, 64))
    present = [p.phase for p in phases]
    s2 = {p: metrics.two_point_correlation(labels, p, r_max) for p in present}
    sizes = {p.phase: (p.size_radius, p.size_fraction) for p in phases}
    if with_tortuosity and max(labels.shape) > max_side:
        notes.append(f"Tortuosity was solved on a centre crop of at most {max_side} px per side "
                     f"(the image is {labels.shape}).")
    return SegmentResult(img, labels, used, phases, s2, sizes, tuple(notes))


def generate(porosity: float, shape: tuple[int, ...], seed: int = 0,
             model_name: str = "microstructure_generator") -> GenerateResult:
    """Sample a bundled generator at ``porosity`` and measure the result (no tortuosity).

    ``model_name`` is ``microstructure_generator`` (the level-cut model, the default: it measures
    closer to the held-out data) or ``microstructure_slicegan``. Volumes above
    :data:`MAX_METRICS_SIDE` per side are measured on a centre crop (see ``notes``).
    """
    from battgai.core import registry
    from battgai.microstructure.generation import generator, slicegan

    modules = {generator.MODEL_NAME: generator, slicegan.MODEL_NAME: slicegan}
    if model_name not in modules:
        raise ValueError(f"unknown generator {model_name!r}; known: {sorted(modules)}")
    module = modules[model_name]
    model = module.load()
    card = registry.load_card(model_name)
    t0 = time.perf_counter()
    labels = module.sample(model, porosity, shape, seed)
    seconds = time.perf_counter() - t0
    crop = _metrics_crop(labels.shape)
    measured = labels if crop is None else labels[crop]
    notes = () if crop is None else (_crop_note(measured.shape),)
    return GenerateResult(labels, porosity, seed, card.name, card.sha256, seconds,
                          metrics.phase_metrics(measured), notes)


def fuse_and_measure(lowres: np.ndarray, highres: np.ndarray, scale: int, lowres_value: float | None,
                     highres_value: float | None, with_tortuosity: bool = True, seed: int = 0,
                     progress: Progress | None = None) -> tuple[fusion.FusionResult, list[dict[str, object]]]:
    """Fuse a low-resolution 3D volume with a high-resolution 2D image of one phase, and measure both answers.

    ``lowres_value`` / ``highres_value``: the phase's value in each image when it is segmented; ``None``
    for a grey image, whose bright phase is taken (multi-Otsu). The table compares the fused volume with
    the trilinear baseline: volume fraction, specific surface area and (optionally) tortuosity per axis.
    """
    lr = fusion.phase_fraction(np.asarray(lowres), lowres_value)
    if highres_value is not None:
        mask2d = np.asarray(highres) == highres_value
    else:
        img = to_float(highres)
        mask2d = img > segment.multiotsu_thresholds(img, 2)[0]
    res = fusion.fuse(lr, mask2d, scale, seed=seed, progress=progress)
    rows = []
    for name, vol in (("fused (2D statistics)", res.volume), ("trilinear upsampling (baseline)", res.baseline)):
        v = vol.astype(np.uint8)
        row: dict[str, object] = {"volume": name, "volume fraction": round(metrics.volume_fraction(v, 1), 4),
                                  "specific surface area (1/voxel)": round(metrics.specific_surface_area(v, 1), 4)}
        if with_tortuosity:
            for ax in range(3):
                tau = metrics.tortuosity(v, 1, axis=ax).tau
                row[f"tortuosity axis {ax}"] = round(tau, 3) if np.isfinite(tau) else "not connected"
        rows.append(row)
    return res, rows


def phase_table(phases: list[metrics.PhaseMetrics], names: dict[int, str] | None = None) -> list[dict[str, object]]:
    """Rows for a metrics table / CSV: one per phase."""
    rows = []
    for p in phases:
        row: dict[str, object] = {
            "phase": (names or {}).get(p.phase, str(p.phase)),
            "volume fraction": round(p.volume_fraction, 4),
            "specific surface area (1/px)": round(p.specific_surface_area, 4),
            "mean diameter (px, local thickness)": round(p.mean_diameter, 2),
        }
        for ax, tau in enumerate(p.tortuosity):
            row[f"tortuosity axis {ax}"] = round(tau, 3) if np.isfinite(tau) else "not connected"
        rows.append(row)
    return rows


def to_tiff(array: np.ndarray) -> bytes:
    """TIFF bytes of a 2D image or 3D stack (multi-page), keeping the dtype."""
    import tifffile

    buf = _io.BytesIO()
    tifffile.imwrite(buf, np.asarray(array))
    return buf.getvalue()


def weights_bytes(weights: dict[str, np.ndarray]) -> bytes:
    """safetensors bytes of a model's weights (a fitted denoiser kept with its run)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()})


def to_png(image: np.ndarray) -> bytes:
    """8-bit PNG bytes of a 2D float image in [0, 1] or a label image (spread over 0-255)."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"PNG export needs a 2D image, got shape {img.shape}")
    if img.dtype.kind in "ui":
        img = img.astype(np.float32) / max(int(img.max()), 1)
    buf = _io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def to_csv(rows: list[dict[str, object]]) -> bytes:
    import pandas as pd

    return pd.DataFrame(rows).to_csv(index=False).encode()
