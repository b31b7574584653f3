"""Denoising that does not make an image worse: estimate the noise, pick the method on the image itself.

The bundled denoiser learnt grey-level CT / SEM images with Gaussian noise up to
sigma 0.12; on high-contrast, segmented-like images it smears edges into grey
and returns an image worse than its input. So before denoising:

1. The noise is estimated (wavelet median absolute deviation, Donoho and
   Johnstone 1994, as ``skimage.restoration.estimate_sigma``). Reconstruction
   noise is correlated between neighbouring pixels, and the finest wavelet scale
   misses most of it (sigma 0.002 on the raw X-ray slice, whose grain is plain to
   see): :func:`estimate_correlated_noise` compares that scale with the next
   coarser one and, when the noise is correlated, the image is scored by SURE for
   correlated noise (:func:`sure_gain`) instead of Noise2Self.
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
4. A researcher can force a method (``denoise(..., method=...)``); the scores are
   still computed, so the decision shows what the automatic choice would have been.

:func:`residual_correlation` then checks that what was removed looks like
noise (uncorrelated from pixel to pixel), not like structure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np

from battgai.microstructure.enhancement.stack import Progress, class_medians, map_slices

#: Below this noise (sigma in units of the full intensity range, about 1 grey level of 255) nothing is denoised.
MIN_SIGMA = 0.004
#: Highest Gaussian sigma the bundled denoiser was trained on (battgai.microstructure.enhancement.degrade.random_noise).
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

#: Gaussian kernels (sigma, px) that smooth white noise into the correlated noise the estimate tells apart; 0: white.
NOISE_KERNELS_PX = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
#: Fitted noise kernel (px) from which the noise counts as correlated. White noise on the bench's segmented images
#: fits 0.5 px (their edges raise the coarse scale), reconstruction noise on the raw X-ray slice 1.2 px.
CORRELATED_MIN_PX = 0.75
#: Smallest estimated gain (dB) for correlated noise: texture at the noise's own scale passes for it, and on a clean
#: 8-bit texture (the tests' smooth grey image) SURE estimates up to +0.9 dB for non-local means.
CORRELATED_MIN_GAIN_DB = 2.0
#: Side of the central crop SURE scores on (three runs of each method).
SURE_SIDE = 256
#: Step of SURE's finite difference, in noise sigmas: smaller steps meet the methods' stopping tolerances (TV's
#: divergence changed sign between two probes at 0.1 sigma on a 160 x 160 image).
SURE_STEP = 0.5

MODEL_METHOD = "bundled denoiser"
FITTED_METHOD = "denoiser fitted to this image"
CLASSICAL = ("non-local means", "total variation")
NONE = "none (input kept)"
PHASE_LEVELS = "phase levels"
AUTO = "auto"
#: What ``denoise(..., method=...)`` accepts (and FITTED_METHOD when a fitted denoiser is given).
METHODS = (AUTO, MODEL_METHOD, *CLASSICAL, PHASE_LEVELS, NONE)


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
    noise_correlation_px: float = 0.0  # kernel (px) of the noise's correlation between pixels; 0: white noise
    automatic: str = ""  # the method the automatic choice picked (differs from ``method`` when forced)
    forced: bool = False  # the method was forced by the user

    @property
    def in_model_domain(self) -> bool:
        """The bundled net suits this image (denoising: grey, noise in its training range; SR: it was picked)."""
        if math.isnan(self.noise_sigma):  # a super-resolution decision
            return self.method in (SR_NET, SR_LABELS)
        return self.levels == 0 and self.noise_sigma <= TRAINED_MAX_SIGMA and self.noise_correlation_px == 0


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


def _slices(image: np.ndarray) -> list[np.ndarray]:
    """The image itself, or up to 5 slices spread over a stack: what the noise estimates read."""
    return [image] if image.ndim == 2 else list(image[np.linspace(0, len(image) - 1, min(5, len(image))).astype(int)])


def _middle(image: np.ndarray) -> np.ndarray:
    """The image itself, or a stack's middle slice: what the methods are scored on."""
    return image if image.ndim == 2 else image[len(image) // 2]


def estimate_noise(image: np.ndarray) -> float:
    """Gaussian noise sigma of a float image in [0, 1] (median over up to 5 slices of a stack).

    The smaller of the wavelet estimate and the flat-region estimate (:func:`_flat_region_sigma`):
    sharp phase edges inflate the wavelet one (0.07 on a clean 3-phase image), texture the other.
    """
    from skimage.restoration import estimate_sigma

    def one(s: np.ndarray) -> float:
        wavelet, flat = float(estimate_sigma(s)), _flat_region_sigma(s)
        # Flat regions without noise (a phase at 0 under Poisson noise) say nothing about the others.
        return wavelet if flat < MIN_SIGMA else min(wavelet, flat)

    return float(np.median([one(s) for s in _slices(image)]))


def _unit_noise(shape: tuple[int, ...], kernel_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit variance, white smoothed by a Gaussian kernel of ``kernel_px``."""
    from scipy import ndimage as ndi

    n = rng.normal(size=shape)
    n = ndi.gaussian_filter(n, kernel_px) if kernel_px > 0 else n
    return n / n.std()


def _scale_estimates(image2d: np.ndarray) -> tuple[float, float, float]:
    """Noise read at the finest wavelet scale, at the next coarser one, and in the flattest regions."""
    from skimage.restoration import estimate_sigma
    from skimage.transform import downscale_local_mean

    x = image2d.astype(np.float64)
    # 2 x 2 means halve white noise, so doubled they read its sigma again; correlated noise averages out less.
    coarse = 2 * float(estimate_sigma(downscale_local_mean(x, (2, 2))))
    return float(estimate_sigma(x)), coarse, _flat_region_sigma(x)


@functools.cache
def _noise_calibration() -> np.ndarray:
    """:func:`_scale_estimates` of unit noise for each of :data:`NOISE_KERNELS_PX`, shape (kernels, 3)."""
    rng = np.random.default_rng(0)
    return np.array([_scale_estimates(_unit_noise((384, 384), k, rng)) for k in NOISE_KERNELS_PX])


def estimate_correlated_noise(image: np.ndarray) -> tuple[float, float]:
    """Sigma and correlation kernel (px) of noise correlated between neighbouring pixels (median over slices).

    Noise smoothed by a wider kernel keeps less of its variance at the finest wavelet scale
    than at the next coarser one; the ratio of the two, matched against noise simulated for
    each of :data:`NOISE_KERNELS_PX`, gives the kernel, and the coarse-scale and flat-region
    estimates divided by what they read on unit noise of that kernel give sigma (the smaller
    of the two, as in :func:`estimate_noise`). White noise reads kernel 0 and its usual sigma.
    Flat regions without noise (a clean segmented image) give sigma 0: sharp edges alone raise
    the coarse scale, not the flat regions.
    """
    calib = _noise_calibration()
    kernels = np.array(NOISE_KERNELS_PX)
    ratios = calib[:, 0] / calib[:, 1]  # falls with the kernel

    def one(s: np.ndarray) -> tuple[float, float]:
        fine, coarse, flat = _scale_estimates(s)
        if coarse == 0 or flat < MIN_SIGMA:
            return 0.0, 0.0
        px = float(np.interp(fine / coarse, ratios[::-1], kernels[::-1]))
        return min(coarse / np.interp(px, kernels, calib[:, 1]), flat / np.interp(px, kernels, calib[:, 2])), px

    sigmas, kernels_px = zip(*(one(s) for s in _slices(image)), strict=True)
    return float(np.median(sigmas)), float(np.median(kernels_px))


def non_local_means(image: np.ndarray, sigma: float, progress: Progress | None = None) -> np.ndarray:
    """skimage non-local means, h = 0.8 sigma, fast mode (the skimage recipe), slice by slice on a stack.

    ``progress(done, total)`` after each slice of a stack (:func:`~battgai.microstructure.enhancement.stack.
    map_slices`).
    """
    from skimage.restoration import denoise_nl_means

    def one(x: np.ndarray) -> np.ndarray:
        return denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                fast_mode=True).astype(np.float32)

    return map_slices(one, image, progress=progress)


def total_variation(image: np.ndarray, iterations: int | None = None, progress: Progress | None = None) -> np.ndarray:
    """skimage total-variation (Chambolle) denoising, weight 0.1, slice by slice on a stack (``progress`` per slice).

    ``iterations``: a fixed count instead of skimage's stopping tolerance, for :func:`sure_gain`: where the
    tolerance stops one iteration earlier or later the result jumps, and SURE's estimate with it (3.7 or
    5.6 dB for a true 4.1 dB, by probe). 100 iterations land within 0.03 dB of the converged result.
    """
    from skimage.restoration import denoise_tv_chambolle

    fixed = {} if iterations is None else {"eps": 0.0, "max_num_iter": iterations}

    def one(x: np.ndarray) -> np.ndarray:
        return denoise_tv_chambolle(x, weight=0.1, **fixed).astype(np.float32)

    return map_slices(one, image, progress=progress)


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


def to_levels(image: np.ndarray, smoothed: np.ndarray, thresholds: np.ndarray, out: np.ndarray | None = None
              ) -> np.ndarray:
    """Each pixel set to the median input value of its class (classes from ``smoothed``).

    ``out``: a float32 array of the image's shape to write into (``smoothed`` itself may be passed: the classes
    are read first). The classes are kept as uint8 (at most :data:`MAX_LEVELS` of them), a quarter of a float32
    copy, and a float32 image's medians are found without copying each class's values
    (:func:`~battgai.microstructure.enhancement.stack.class_medians`).
    """
    n = len(thresholds) + 1
    cls = np.empty(np.shape(smoothed), np.uint8)
    as_stack = (lambda a: a) if smoothed.ndim == 3 else (lambda a: a[None])
    for src, dst in zip(as_stack(smoothed), as_stack(cls), strict=True):
        dst[...] = np.digitize(src, thresholds)
    if image.dtype == np.float32:
        medians = class_medians(image, cls, n)
    else:  # a float64 image (a direct 2D call; the page's are float32): np.median of a copy of each class's values
        medians = [np.median(image[cls == i]) if (cls == i).any() else None for i in range(n)]
    levels = np.array([0.0 if m is None else m for m in medians], np.float32)  # an empty class is never looked up
    out = np.empty(np.shape(image), np.float32) if out is None else out
    for dst, c in zip(as_stack(out), as_stack(cls), strict=True):
        dst[...] = levels[c]
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


def sure_gain(image2d: np.ndarray, method: Callable[[np.ndarray], np.ndarray], sigma: float,
              kernel_px: float, seed: int = 0) -> float:
    """Estimated PSNR gain (dB) of ``method`` over the input, by SURE for Gaussian noise correlated over ``kernel_px``.

    Noise2Self needs noise independent from pixel to pixel: with correlated noise a method's
    prediction of a hidden pixel shares noise with it and looks better than it is. Stein's
    unbiased risk estimate needs no hidden pixels: with noise covariance sigma^2 R,
    ``E|f(x) - y|^2 = E|f(x) - x|^2 - N sigma^2 + 2 sigma^2 tr(R J_f)``, the trace taken with one
    probe drawn with correlation R, by a central difference (Monte-Carlo SURE, Ramani et al. 2008),
    on the central :data:`SURE_SIDE` crop. On the raw X-ray slice with noise of std 0.05 smoothed
    over 1 px it estimated +4.0 / +4.3 dB for non-local means / total variation (true +4.0 / +4.1).
    """
    x = _central_crop(image2d, SURE_SIDE).astype(np.float64)
    probe = _unit_noise(x.shape, kernel_px, np.random.default_rng(seed))
    step = SURE_STEP * sigma
    fx = np.asarray(method(x), np.float64)
    trace = float(np.mean(probe * (np.asarray(method(x + step * probe), np.float64)
                                   - np.asarray(method(x - step * probe), np.float64)))) / (2 * step)
    est_mse = max(float(np.mean((fx - x) ** 2)) - sigma**2 + 2 * sigma**2 * trace, sigma**2 / 1000)
    return 10 * math.log10(sigma**2 / est_mse)


def denoise(image: np.ndarray, model, fitted=None, progress: Progress | None = None,
            method: str = AUTO) -> tuple[np.ndarray, Decision]:
    """Denoise a float image or stack in [0, 1] with the method picked on the image itself (see the module doc).

    Parameters
    ----------
    image : ndarray
        Float image (2D) or stack (3D) in [0, 1].
    model : EnhanceNet
        The bundled denoiser.
    fitted : EnhanceNet, optional
        A denoiser fitted to this image (:mod:`battgai.microstructure.enhancement.selffit`); it competes with
        the others on the same score.
    progress : callable, optional
        ``progress(done, total)`` while a net runs over tiles.
    method : str
        :data:`AUTO` (the method is picked on the image), or one of :data:`METHODS` (or
        :data:`FITTED_METHOD` with ``fitted``) to force it. The scores are computed either way, and
        the decision records the automatic choice and that the method was forced.

    Returns
    -------
    result : ndarray
        float32, the shape of ``image``.
    decision : Decision

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    allowed = METHODS + ((FITTED_METHOD,) if fitted is not None else ())
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")
    decision, smoothed = _decide(image, model, fitted, score_all=method != AUTO)
    if method != AUTO:
        decision = _force(decision, method, image, smoothed)
    # The middle slice's non-local means is the whole 2D image's: not computed twice.
    return _apply(image, decision, model, progress, fitted, smoothed if image.ndim == 2 else None), decision


def _force(decision: Decision, method: str, image: np.ndarray, smoothed: np.ndarray | None) -> Decision:
    """``decision`` with the user's method in place of the automatic one."""
    if method == PHASE_LEVELS:
        if smoothed is None:
            smoothed = non_local_means(_middle(image), decision.noise_sigma)
        k = phase_levels(smoothed)[0]
        if k == 0:
            raise ValueError("phase levels need at least two distinct grey levels in the image")
        method = f"{PHASE_LEVELS} ({k})"
    note = (f"Method forced by the user: {method} (the automatic choice was {decision.method})."
            if method != decision.method else f"Method chosen by the user: {method}, as the automatic choice.")
    return dataclasses.replace(decision, method=method, automatic=decision.method, forced=True,
                               notes=(*decision.notes, note))


def _decide(image: np.ndarray, model, fitted=None, score_all: bool = False) -> tuple[Decision, np.ndarray | None]:
    """The decision, and the middle slice after non-local means (None when the noise was too low to smooth).

    ``score_all``: score the methods on a segmented-like image too (a forced method shows what it overrides).
    """
    from battgai.microstructure.enhancement.enhance import apply_model

    sigma = estimate_noise(image)
    # The image arrives on its own range (io.intensity_range), whatever its bit depth: 255 steps only put the number
    # on a familiar scale.
    notes = [f"Estimated noise: sigma = {sigma:.3f} of the image's intensity range ({sigma * 255:.1f} of 255 on an "
             "8-bit scale)."]
    corr_sigma, kernel_px = estimate_correlated_noise(image)
    correlated = kernel_px >= CORRELATED_MIN_PX and corr_sigma >= max(MIN_SIGMA, sigma)
    if correlated:
        notes[0] = (f"Estimated noise: sigma = {corr_sigma:.3f} of the intensity range ({corr_sigma * 255:.1f} grey "
                    f"levels of 255), correlated between neighbouring pixels (as a Gaussian kernel of {kernel_px:.1f} "
                    f"px smooths white noise; usual for reconstructions), which the finest scale reads as only "
                    f"{sigma:.3f}. The methods are scored by SURE for correlated noise.")
        sigma = corr_sigma
    else:
        kernel_px = 0.0
    min_gain = CORRELATED_MIN_GAIN_DB if correlated else MIN_GAIN_DB

    def decision(method: str, k: int = 0, fraction: float = 0.0, scores: tuple[Score, ...] = ()) -> Decision:
        return Decision(sigma, k, fraction, method, scores, tuple(notes), noise_correlation_px=kernel_px,
                        automatic=method)

    if sigma < MIN_SIGMA:
        notes.append("No measurable noise: the input is kept as it is.")
        return decision(NONE), None
    middle = _middle(image)
    smoothed = non_local_means(middle, sigma)
    k, fraction, _ = phase_levels(smoothed)
    segmented = fraction >= LEVEL_FRACTION
    if segmented and not score_all:
        notes.append(f"The image looks segmented: {100 * fraction:.0f} % of the smoothed pixels sit at {k} grey "
                     "levels. The bundled denoiser learnt grey-level images and blurs such edges; each pixel gets "
                     "its phase's level instead (non-local means, then multi-Otsu classes).")
        return decision(f"{PHASE_LEVELS} ({k})", k, fraction), smoothed
    if sigma > TRAINED_MAX_SIGMA:
        notes.append(f"The noise is above the bundled denoiser's training range (sigma <= {TRAINED_MAX_SIGMA}).")
    methods = {MODEL_METHOD: lambda x: apply_model(x.astype(np.float32), model, tile=None),
               "non-local means": lambda x: non_local_means(x, sigma),
               "total variation": total_variation}
    if fitted is not None:
        methods[FITTED_METHOD] = lambda x: apply_model(x.astype(np.float32), fitted, tile=None)
    if correlated:
        methods["total variation"] = lambda x: total_variation(x, iterations=100)
        scores = tuple(Score(name, sure_gain(middle, f, sigma, kernel_px)) for name, f in methods.items())
    else:
        crop = _central_crop(middle)
        scores = tuple(Score(name, self_supervised_gain(crop, f, sigma)) for name, f in methods.items())
    if segmented:  # scored only because a method is forced; the automatic choice stays the phase levels
        notes.append(f"The image looks segmented: {100 * fraction:.0f} % of the smoothed pixels sit at {k} grey "
                     "levels; the automatic choice gives each pixel its phase's level.")
        return decision(f"{PHASE_LEVELS} ({k})", k, fraction, scores), smoothed
    candidates = scores
    if correlated:
        # The nets learnt white noise; on correlated noise SURE overestimated the bundled one by up to 4 dB (est 5.5,
        # true 1.5 on a soft particle image) and never the classical methods by more than 1 dB.
        candidates = tuple(s for s in scores if s.method in CLASSICAL)
        notes.append("The denoisers learnt white noise: on correlated noise their scores are shown but not trusted, "
                     "and only the classical methods are picked automatically.")
    best = max(candidates, key=lambda s: s.est_gain_db)
    if best.method == FITTED_METHOD:
        # Blind-spot training teaches the fitted copy exactly what this score rewards (predicting a pixel from its
        # neighbours), so it must win by a margin: in the bench it scored best yet was 0.18 dB below the bundled one.
        runner_up = max((s for s in scores if s.method != FITTED_METHOD), key=lambda s: s.est_gain_db)
        if best.est_gain_db < runner_up.est_gain_db + FITTED_MARGIN_DB:
            notes.append(f"The denoiser fitted to this image scores {best.est_gain_db - runner_up.est_gain_db:+.2f} "
                         f"dB over the {runner_up.method}, less than the {FITTED_MARGIN_DB:g} dB it must win by.")
            best = runner_up
    if best.est_gain_db < min_gain:
        notes.append(f"No method is estimated to improve this image by {min_gain:g} dB or more; the input is kept.")
        return decision(NONE, 0, fraction, scores), smoothed
    if best.method != MODEL_METHOD:
        notes.append(f"The {best.method} scores better than the bundled denoiser on this image "
                     f"({'SURE' if correlated else 'self-supervised loss'} on its central crop) and is used instead.")
    return decision(best.method, 0, fraction, scores), smoothed


def _apply(image: np.ndarray, decision: Decision, model, progress: Progress | None = None, fitted=None,
           smoothed: np.ndarray | None = None) -> np.ndarray:
    """Run the method of ``decision``; ``smoothed``: the image's non-local means when already computed."""
    from battgai.microstructure.enhancement.enhance import apply_model

    if decision.method == NONE:
        return map_slices(lambda x: np.array(x, np.float32), image, progress=progress)  # a copy, as the others
    if decision.method == MODEL_METHOD:
        return apply_model(image, model, progress=progress)
    if decision.method == FITTED_METHOD:
        return apply_model(image, fitted, progress=progress)
    if decision.method == "total variation":
        return total_variation(image, progress=progress)
    if smoothed is None:
        smoothed = non_local_means(image, decision.noise_sigma, progress=progress)
    if decision.method == "non-local means":
        return smoothed
    _, _, thresholds = phase_levels(smoothed)
    # Into the smoothed image's own memory on a stack (nothing else holds it): one float32 copy fewer.
    return to_levels(image, smoothed, thresholds, out=smoothed if image.ndim == 3 else None)


def residual_structure_threshold(decision: Decision) -> float:
    """Residual lag-1 correlation above which the removed part holds structure, for the noise of ``decision``.

    Removed white noise correlates at about 0 from pixel to pixel; removed correlated noise at its
    own lag-1 correlation, exp(-1 / (4 k^2)) for a Gaussian kernel of k px (0.78 at 1 px).
    """
    k = decision.noise_correlation_px
    return RESIDUAL_STRUCTURE if k == 0 else min(math.exp(-1 / (4 * k * k)) + RESIDUAL_STRUCTURE, 0.95)


def residual_correlation(before: np.ndarray, after: np.ndarray) -> float:
    """Mean lag-1 correlation (along rows and columns) of ``before - after``: about 0 for removed noise.

    Removed structure (edges, texture) is smooth from pixel to pixel and scores high. A stack is read
    one slice at a time (sums in float64), never as a float64 copy of the whole stack.
    """
    pairs = list(zip(before if before.ndim == 3 else [before], after if after.ndim == 3 else [after], strict=True))

    def residual(b: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.asarray(b, np.float64) - a

    mean = sum(float(residual(b, a).sum()) for b, a in pairs) / before.size
    sq = rows = cols = 0.0
    n_rows = n_cols = 0
    for b, a in pairs:
        r = residual(b, a) - mean
        sq += float(np.sum(r * r))
        rows += float(np.sum(r[1:, :] * r[:-1, :]))
        cols += float(np.sum(r[:, 1:] * r[:, :-1]))
        n_rows, n_cols = n_rows + r[1:, :].size, n_cols + r[:, 1:].size
    var = sq / before.size
    if var == 0:
        return 0.0
    return float(np.mean([rows / n_rows, cols / n_cols]) / var)


SR_NET = "super-resolution net"
#: A label image (few integer phase values) is upscaled as labels (:mod:`battgai.microstructure.enhancement.labels`).
SR_LABELS = "label upscaling (signed distance)"
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
    from battgai.microstructure.enhancement import degrade
    from battgai.microstructure.enhancement.enhance import apply_model, bicubic, skimage_upscale

    middle = _middle(image)
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
    from battgai.microstructure.enhancement.enhance import apply_model, bicubic, skimage_upscale

    if decision.method == SR_NET:
        return apply_model(image, model, tile=tile, progress=progress)
    one = (lambda x: bicubic(x, scale)) if decision.method == SR_CLASSICAL["bicubic"] else \
        (lambda x: skimage_upscale(x, scale))
    return map_slices(one, image, scale=scale, progress=progress)
