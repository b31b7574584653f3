"""Denoising that does not make an image worse: estimate the noise, pick the method on the image itself.

The bundled denoiser learnt grey-level CT / SEM images with Gaussian noise up to
sigma 0.12; on high-contrast, segmented-like images it smears edges into grey
and returns an image worse than its input. So before denoising:

1. The noise is estimated (wavelet median absolute deviation, Donoho and
   Johnstone 1994, as ``skimage.restoration.estimate_sigma``).
2. A segmented-like image is recognised: after non-local means, nearly every
   pixel sits at one of k grey levels (:func:`phase_levels`). Such an image is
   outside the bundled model's domain; each pixel gets the level of its phase
   (multi-Otsu classes of the smoothed image, level = median of the input in that
   class, which clipping at 0 or 1 does not bias).
3. Otherwise the bundled model, non-local means and total variation are scored
   on the image itself with the Noise2Self self-supervised loss (Batson and
   Royer 2019): the J-invariant version of each method predicts every pixel
   without seeing it, so its mean squared difference to the noisy image is its
   error against the unknown clean image plus sigma^2. The method with the
   lowest loss is used, and none of them when none is estimated to beat the input
   by :data:`MIN_GAIN_DB`.

:func:`residual_correlation` then checks that what was removed looks like
noise (uncorrelated from pixel to pixel), not like structure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

Progress = Callable[[int, int], None]

#: Below this noise (sigma in units of the full intensity range, about 1 grey level of 255) nothing is denoised.
MIN_SIGMA = 0.004
#: Highest Gaussian sigma the bundled denoiser was trained on (battgai.microstructure.degrade.random_noise).
TRAINED_MAX_SIGMA = 0.12
#: Fraction of smoothed pixels within a quarter level spacing of k levels that makes an image segmented-like.
LEVEL_FRACTION = 0.9
MAX_LEVELS = 4
#: Side of the central crop the methods are scored on (the J-invariant loss runs each method 16 times).
SCORE_SIDE = 192
#: Smallest estimated gain (dB) for which a method replaces the input: the estimate is only as good as the
#: noise estimate, and pixel-scale structure passes for noise.
MIN_GAIN_DB = 1.0
#: Margin (dB) by which a denoiser fitted to the image must beat the others on the self-supervised score.
FITTED_MARGIN_DB = 0.5
#: Residual lag-1 correlation above which the removed part is reported as holding structure.
RESIDUAL_STRUCTURE = 0.3

MODEL_METHOD = "bundled denoiser"
FITTED_METHOD = "denoiser fitted to this image"
CLASSICAL = ("non-local means", "total variation")
NONE = "none (input kept)"


@dataclasses.dataclass(frozen=True)
class Score:
    """A method's self-supervised score on the image: estimated PSNR gain over the input (dB)."""

    method: str
    est_gain_db: float


@dataclasses.dataclass(frozen=True)
class Decision:
    """What :func:`denoise` or :func:`upscale` found and chose, with the reasons (sentences for the page)."""

    noise_sigma: float  # in units of the [0, 1] intensity range
    levels: int  # k phases of a segmented-like image, 0 for a grey-level image
    level_fraction: float
    method: str
    scores: tuple[Score, ...]
    notes: tuple[str, ...]
    score_name: str = "estimated gain over the input (dB)"

    @property
    def in_model_domain(self) -> bool:
        """The bundled net suits this image (denoising: grey, noise in its training range; SR: it was picked)."""
        if math.isnan(self.noise_sigma):  # a super-resolution decision
            return self.method == SR_NET
        return self.levels == 0 and self.noise_sigma <= TRAINED_MAX_SIGMA


def _flat_region_sigma(image2d: np.ndarray, window: int = 7) -> float:
    """Noise sigma from the flattest quarter of the image: the 25th percentile of the local standard deviation.

    Divided by 0.93, that percentile's ratio to sigma for pure Gaussian noise over 49 pixels.
    """
    from scipy import ndimage as ndi

    x = image2d.astype(np.float64)
    m = ndi.uniform_filter(x, window)
    sd = np.sqrt(np.maximum(ndi.uniform_filter(x * x, window) - m * m, 0.0))
    inner = sd[window:-window, window:-window] if min(sd.shape) > 4 * window else sd
    return float(np.percentile(inner, 25)) / 0.93


def estimate_noise(image: np.ndarray) -> float:
    """Gaussian noise sigma of a float image in [0, 1] (median over up to 5 slices of a stack).

    The smaller of the wavelet estimate and the flat-region estimate (:func:`_flat_region_sigma`):
    sharp phase edges inflate the wavelet one (0.07 on a clean 3-phase image), texture the other.
    """
    from skimage.restoration import estimate_sigma

    slices = [image] if image.ndim == 2 else list(image[np.linspace(0, len(image) - 1, min(5, len(image))).astype(int)])
    def one(s: np.ndarray) -> float:
        wavelet, flat = float(estimate_sigma(s)), _flat_region_sigma(s)
        # Flat regions without noise (a phase at 0 under Poisson noise) say nothing about the others.
        return wavelet if flat < MIN_SIGMA else min(wavelet, flat)

    return float(np.median([one(s) for s in slices]))


def non_local_means(image: np.ndarray, sigma: float) -> np.ndarray:
    """skimage non-local means, h = 0.8 sigma, fast mode (the skimage recipe), slice by slice on a stack."""
    from skimage.restoration import denoise_nl_means

    def one(x: np.ndarray) -> np.ndarray:
        return denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                fast_mode=True).astype(np.float32)

    return one(image) if image.ndim == 2 else np.stack([one(s) for s in image])


def total_variation(image: np.ndarray) -> np.ndarray:
    """skimage total-variation (Chambolle) denoising, weight 0.1, slice by slice on a stack."""
    from skimage.restoration import denoise_tv_chambolle

    def one(x: np.ndarray) -> np.ndarray:
        return denoise_tv_chambolle(x, weight=0.1).astype(np.float32)

    return one(image) if image.ndim == 2 else np.stack([one(s) for s in image])


def phase_levels(smoothed: np.ndarray) -> tuple[int, float, np.ndarray]:
    """The k (2..4) grey levels that hold the most smoothed pixels, as (k, fraction, thresholds).

    ``fraction`` is the share of pixels within a quarter of the smallest level spacing of
    their level (level = median of the class); a segmented image with noise smoothed away
    scores close to 1, a grey-level image well below (0.4-0.75 on the raw X-ray slice).
    """
    from skimage.filters import threshold_multiotsu

    best = (0, 0.0, np.array([]))
    flat = smoothed.ravel()
    sample = flat if flat.size <= 1_000_000 else flat[:: flat.size // 1_000_000 + 1]
    for k in range(2, MAX_LEVELS + 1):
        try:
            th = threshold_multiotsu(sample, classes=k)
        except ValueError:  # fewer distinct values than classes
            break
        cls = np.digitize(sample, th)
        levels = np.array([np.median(sample[cls == i]) if (cls == i).any() else np.nan for i in range(k)])
        if np.isnan(levels).any() or np.min(np.diff(levels)) <= 0:
            continue
        near = float(np.mean(np.abs(sample - levels[cls]) < 0.25 * np.min(np.diff(levels))))
        if near > best[1] + 0.02:  # more levels only when they fit clearly better
            best = (k, near, th)
    return best


def to_levels(image: np.ndarray, smoothed: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each pixel set to the median input value of its class (classes from ``smoothed``)."""
    cls = np.digitize(smoothed, thresholds)
    out = np.empty_like(image, dtype=np.float32)
    for i in range(len(thresholds) + 1):
        m = cls == i
        if m.any():
            out[m] = np.median(image[m])
    return out


def _central_crop(image2d: np.ndarray, side: int = SCORE_SIDE) -> np.ndarray:
    h, w = image2d.shape
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image2d[y:y + side, x:x + side]


def self_supervised_gain(image2d: np.ndarray, method: Callable[[np.ndarray], np.ndarray], sigma: float) -> float:
    """Estimated PSNR gain (dB) of ``method`` over the noisy input, from the Noise2Self loss on ``image2d``."""
    from skimage.restoration import denoise_invariant

    invariant = denoise_invariant(image2d.astype(np.float64), method)
    loss = float(np.mean((invariant - image2d) ** 2))
    est_mse = max(loss - sigma**2, sigma**2 / 1000)  # the loss is error + sigma^2; floor: a 30 dB gain
    return 10 * math.log10(sigma**2 / est_mse)


def denoise(image: np.ndarray, model, fitted=None, progress: Progress | None = None) -> tuple[np.ndarray, Decision]:
    """Denoise a float image or stack in [0, 1] with the method picked on the image itself (see the module doc).

    ``fitted``, a denoiser fitted to this image (:mod:`battgai.microstructure.selffit`), competes
    with the others on the same score. Returns ``(result, decision)``.
    """
    decision, smoothed = _decide(image, model, fitted)
    # The middle slice's non-local means is the whole 2D image's: not computed twice.
    return _apply(image, decision, model, progress, fitted, smoothed if image.ndim == 2 else None), decision


def _decide(image: np.ndarray, model, fitted=None) -> tuple[Decision, np.ndarray | None]:
    """The decision, and the middle slice after non-local means (None when the noise was too low to smooth)."""
    from battgai.microstructure.enhance import apply_model

    sigma = estimate_noise(image)
    notes = [f"Estimated noise: sigma = {sigma:.3f} of the intensity range ({sigma * 255:.1f} grey levels of 255)."]
    if sigma < MIN_SIGMA:
        notes.append("No measurable noise: the input is kept as it is.")
        return Decision(sigma, 0, 0.0, NONE, (), tuple(notes)), None
    middle = image if image.ndim == 2 else image[len(image) // 2]
    smoothed = non_local_means(middle, sigma)
    k, fraction, _ = phase_levels(smoothed)
    if fraction >= LEVEL_FRACTION:
        notes.append(f"The image looks segmented: {100 * fraction:.0f} % of the smoothed pixels sit at {k} grey "
                     "levels. The bundled denoiser learnt grey-level images and blurs such edges; each pixel gets "
                     "its phase's level instead (non-local means, then multi-Otsu classes).")
        return Decision(sigma, k, fraction, f"phase levels ({k})", (), tuple(notes)), smoothed
    if sigma > TRAINED_MAX_SIGMA:
        notes.append(f"The noise is above the bundled denoiser's training range (sigma <= {TRAINED_MAX_SIGMA}).")
    crop = _central_crop(middle)
    methods = {MODEL_METHOD: lambda x: apply_model(x.astype(np.float32), model, tile=None),
               "non-local means": lambda x: non_local_means(x, sigma),
               "total variation": total_variation}
    if fitted is not None:
        methods[FITTED_METHOD] = lambda x: apply_model(x.astype(np.float32), fitted, tile=None)
    scores = tuple(Score(name, self_supervised_gain(crop, f, sigma)) for name, f in methods.items())
    best = max(scores, key=lambda s: s.est_gain_db)
    if best.method == FITTED_METHOD:
        # Blind-spot training teaches the fitted copy exactly what this score rewards (predicting a pixel from its
        # neighbours), so it must win by a margin: in the bench it scored best yet was 0.18 dB below the bundled one.
        runner_up = max((s for s in scores if s.method != FITTED_METHOD), key=lambda s: s.est_gain_db)
        if best.est_gain_db < runner_up.est_gain_db + FITTED_MARGIN_DB:
            notes.append(f"The denoiser fitted to this image scores {best.est_gain_db - runner_up.est_gain_db:+.2f} "
                         f"dB over the {runner_up.method}, less than the {FITTED_MARGIN_DB:g} dB it must win by.")
            best = runner_up
    if best.est_gain_db < MIN_GAIN_DB:
        notes.append(f"No method is estimated to improve this image by {MIN_GAIN_DB:g} dB or more; the input is kept.")
        return Decision(sigma, 0, fraction, NONE, scores, tuple(notes)), smoothed
    if best.method != MODEL_METHOD:
        notes.append(f"The {best.method} scores better than the bundled denoiser on this image "
                     "(self-supervised loss on its central crop) and is used instead.")
    return Decision(sigma, 0, fraction, best.method, scores, tuple(notes)), smoothed


def _apply(image: np.ndarray, decision: Decision, model, progress: Progress | None = None, fitted=None,
           smoothed: np.ndarray | None = None) -> np.ndarray:
    """Run the method of ``decision``; ``smoothed``: the image's non-local means when already computed."""
    from battgai.microstructure.enhance import apply_model

    if decision.method == NONE:
        return image.astype(np.float32)
    if decision.method == MODEL_METHOD:
        return apply_model(image, model, progress=progress)
    if decision.method == FITTED_METHOD:
        return apply_model(image, fitted, progress=progress)
    if decision.method == "total variation":
        return total_variation(image)
    if smoothed is None:
        smoothed = non_local_means(image, decision.noise_sigma)
    if decision.method == "non-local means":
        return smoothed
    _, _, thresholds = phase_levels(smoothed)
    return to_levels(image, smoothed, thresholds)


def residual_correlation(before: np.ndarray, after: np.ndarray) -> float:
    """Mean lag-1 correlation (along rows and columns) of ``before - after``: about 0 for removed noise.

    Removed structure (edges, texture) is smooth from pixel to pixel and scores high.
    """
    r = (np.asarray(before, np.float64) - after)
    r = r - r.mean()
    var = float(np.mean(r * r))
    if var == 0:
        return 0.0
    c = [float(np.mean(r[..., 1:, :] * r[..., :-1, :])), float(np.mean(r[..., :, 1:] * r[..., :, :-1]))]
    return float(np.mean(c) / var)


SR_NET = "super-resolution net"
SR_CLASSICAL = {"bicubic": "bicubic", "skimage": "skimage rescale + unsharp mask"}
#: Scales at which the self-similarity test picks the upscaler; at x4 it sees the image at 1/16 and picked
#: wrongly on 3 of 6 image types in the bench (up to 3.4 dB lost), so x4 keeps the net (never below bicubic there).
SR_SELF_TEST_SCALES = (2,)


def upscale(image: np.ndarray, model, scale: int, progress: Progress | None = None,
            tile: int | None = 256) -> tuple[np.ndarray, Decision]:
    """Upscale a float image or stack in [0, 1] with the upscaler picked on the image; ``(result, decision)``."""
    decision = _decide_sr(image, model, scale)
    return _apply_sr(image, decision, model, scale, progress, tile), decision


def _decide_sr(image: np.ndarray, model, scale: int) -> Decision:
    """Pick the upscaler for a float image or stack in [0, 1] by self-similarity.

    The image is downscaled by ``scale`` (the degradation the upscalers learnt: Gaussian blur 0.5 px,
    binning) and each upscaler restores it; the PSNR against the image itself scores it. On the
    bench's six image types this picks the best x2 upscaler every time.
    """
    from battgai.microstructure import degrade
    from battgai.microstructure.enhance import apply_model, bicubic, skimage_upscale

    middle = image if image.ndim == 2 else image[len(image) // 2]
    base = degrade.crop_to_multiple(_central_crop(middle, 2 * SCORE_SIDE), scale)
    name = f"self-similarity PSNR: x{scale} downscale of the image restored (dB)"
    if scale not in SR_SELF_TEST_SCALES or min(base.shape) < 8 * scale:
        why = (f"at x{scale} the test image would be too small to be trusted" if scale in SR_SELF_TEST_SCALES
               else f"at x{scale} the self-similarity test is not trusted (see docs/BENCHMARKS.md)")
        return Decision(math.nan, 0, 0.0, SR_NET, (), (f"The super-resolution net is used: {why}.",), name)
    small = degrade.blur_downsample(base, scale)
    methods = {SR_NET: lambda x: apply_model(x, model, tile=None), SR_CLASSICAL["bicubic"]: lambda x: bicubic(x, scale),
               SR_CLASSICAL["skimage"]: lambda x: skimage_upscale(x, scale)}
    scores = tuple(Score(m, float(10 * np.log10(1.0 / max(np.mean((np.clip(f(small), 0, 1) - base) ** 2), 1e-10))))
                   for m, f in methods.items())
    best = max(scores, key=lambda x: x.est_gain_db)
    notes = [f"Each upscaler restored this image from its own x{scale} downscale; the {best.method} did best "
             f"({best.est_gain_db:.2f} dB) and is used."]
    if best.method != SR_NET:
        notes.append("The super-resolution net is outside its domain on this image.")
    return Decision(math.nan, 0, 0.0, best.method, scores, tuple(notes), name)


def _apply_sr(image: np.ndarray, decision: Decision, model, scale: int, progress: Progress | None = None,
              tile: int | None = 256) -> np.ndarray:
    """Upscale a float image or stack in [0, 1] with the method of ``decision``, slice by slice."""
    from battgai.microstructure.enhance import apply_model, bicubic, skimage_upscale

    if decision.method == SR_NET:
        return apply_model(image, model, tile=tile, progress=progress)
    one = (lambda x: bicubic(x, scale)) if decision.method == SR_CLASSICAL["bicubic"] else \
        (lambda x: skimage_upscale(x, scale))
    return one(image) if image.ndim == 2 else np.stack([one(sl) for sl in image])
