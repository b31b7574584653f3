"""Synthetic degradations of clean microstructure images, to make training and test pairs.

No real low- / high-resolution or noisy / clean pairs exist for these electrodes, so pairs are made
by degrading clean images with models of what the instruments do: optical blur + pixel binning
(resolution loss), Poisson photon noise + Gaussian read noise, CT ring artefacts (miscalibrated
detector pixels give concentric rings after reconstruction), CT streaks (strong absorbers /
photon starvation give lines through the slice) and SEM scan-line noise (per-line offset from
beam current drift), noise correlated between neighbouring pixels (reconstruction filters and
interpolation spread each pixel's noise over its neighbours) and mild optical blur.

All functions take and return float images in [0, 1] (values are clipped to that range) and take
a ``numpy.random.Generator`` where they are random, so a seed reproduces a degradation.

References
----------
.. [1] Boin & Haibel, "Compensation of ring artefacts in synchrotron tomographic images",
   Opt. Express 14 (2006) 12071.
.. [2] Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for single-image
   raw-data", IEEE Trans. Image Process. 17 (2008) 1737.
"""

from __future__ import annotations

import numpy as np


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"{name} must be a 2D array, got shape {image.shape}")
    if min(image.shape) < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got {image.shape}")
    return image


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom / right edges so both sides are multiples of ``scale``."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


def blur_downsample(image: np.ndarray, scale: int, sigma: float = 0.5) -> np.ndarray:
    """Resolution loss: Gaussian blur (optics) then ``scale`` x ``scale`` pixel binning (detector).

    Parameters
    ----------
    image : ndarray, 2D
        Clean high-resolution image; its sides are cropped to multiples of ``scale``.
    scale : int
        Downsampling factor (>= 1).
    sigma : float
        Gaussian sigma of the optical blur, in *low-resolution* pixels.

    Returns
    -------
    ndarray of float32 with shape ``(H // scale, W // scale)``.
    """
    from scipy import ndimage as ndi

    image = _check_image(image)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    if min(image.shape) < scale:
        raise ValueError(f"image {image.shape} is smaller than the scale factor {scale}")
    image = crop_to_multiple(image, scale)
    if sigma > 0:
        image = ndi.gaussian_filter(image, sigma * scale, mode="reflect")
    h, w = image.shape
    return image.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3)).astype(np.float32)


def add_noise(
    image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, photons: float | None = None
) -> np.ndarray:
    """Poisson-Gaussian noise [2]_: photon counting at ``photons`` per unit grey, plus read noise.

    Parameters
    ----------
    sigma : float
        Standard deviation of the additive Gaussian noise (grey levels in [0, 1]).
    photons : float or None
        Photons per unit intensity; lower is noisier. ``None`` skips the Poisson part.
    """
    image = _check_image(image)
    out = image
    if photons is not None:
        if photons <= 0:
            raise ValueError(f"photons must be positive, got {photons}")
        out = rng.poisson(np.clip(out, 0, None) * photons).astype(np.float32) / photons
    if sigma > 0:
        out = out + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def ring_artifacts(
    image: np.ndarray, rng: np.random.Generator, amplitude: float = 0.05, n_rings: int = 8,
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """CT ring artefacts [1]_: thin concentric bands of random sign around the rotation axis."""
    image = _check_image(image)
    h, w = image.shape
    cy, cx = centre if centre is not None else (rng.uniform(0, h), rng.uniform(0, w))
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - cy, xx - cx)
    rings = np.zeros_like(image)
    for radius, sign, width in zip(rng.uniform(0, r.max(), n_rings), rng.choice([-1.0, 1.0], n_rings),
                                   rng.uniform(0.6, 1.5, n_rings), strict=True):
        rings += sign * np.exp(-0.5 * ((r - radius) / width) ** 2)
    return np.clip(image + amplitude * rings, 0.0, 1.0).astype(np.float32)


def streak_artifacts(
    image: np.ndarray, rng: np.random.Generator, amplitude: float = 0.05, n_streaks: int = 3
) -> np.ndarray:
    """CT streaks: bright or dark lines through the slice at random angles and positions."""
    image = _check_image(image)
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    streaks = np.zeros_like(image)
    for _ in range(n_streaks):
        theta = rng.uniform(0, np.pi)
        py, px = rng.uniform(0, h), rng.uniform(0, w)
        dist = np.abs((yy - py) * np.cos(theta) - (xx - px) * np.sin(theta))
        streaks += rng.choice([-1.0, 1.0]) * np.exp(-0.5 * (dist / rng.uniform(0.5, 1.5)) ** 2)
    return np.clip(image + amplitude * streaks, 0.0, 1.0).astype(np.float32)


def scanline_noise(image: np.ndarray, rng: np.random.Generator, amplitude: float = 0.04) -> np.ndarray:
    """SEM scan-line noise: each row gets its own offset and gain (beam current drift)."""
    image = _check_image(image)
    h = image.shape[0]
    offset = rng.normal(0.0, amplitude, (h, 1)).astype(np.float32)
    gain = 1.0 + rng.normal(0.0, amplitude, (h, 1)).astype(np.float32)
    return np.clip(image * gain + offset, 0.0, 1.0).astype(np.float32)


def correlated_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05,
                     kernel_px: float = 1.0) -> np.ndarray:
    """Noise correlated between pixels, as after reconstruction: white noise smoothed, rescaled to ``sigma``.

    Parameters
    ----------
    sigma : float
        Standard deviation of the added noise (grey levels in [0, 1]).
    kernel_px : float
        Sigma of the Gaussian kernel that smooths the white noise, in pixels.
    """
    from scipy import ndimage as ndi

    image = _check_image(image)
    noise = ndi.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), kernel_px)
    noise *= sigma / max(float(noise.std()), 1e-8)
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def random_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mix of the noise and artefact models above, as used to train the denoiser.

    One noise model per image: Poisson-Gaussian (Gaussian sigma in [0.01, 0.12], Poisson with 20-300
    photons per unit half of the time) with probability 0.6, Poisson alone (a photon-counting
    detector, 15-300 photons) with probability 0.2, correlated noise (std 0.02-0.08, kernel
    0.5-1.5 px) with probability 0.2. Then each of ring artefacts, streaks and scan lines with
    probability 0.25. Photon counts are drawn log-uniformly, so low and high doses weigh the same.
    """
    kind = rng.random()
    if kind < 0.6:
        photons = float(np.exp(rng.uniform(np.log(20), np.log(300)))) if rng.random() < 0.5 else None
        out = add_noise(image, rng, sigma=float(rng.uniform(0.01, 0.12)), photons=photons)
    elif kind < 0.8:
        out = add_noise(image, rng, sigma=0.0, photons=float(np.exp(rng.uniform(np.log(15), np.log(300)))))
    else:
        out = correlated_noise(image, rng, sigma=float(rng.uniform(0.02, 0.08)),
                               kernel_px=float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.25:
        out = ring_artifacts(out, rng, amplitude=float(rng.uniform(0.02, 0.08)))
    if rng.random() < 0.25:
        out = streak_artifacts(out, rng, amplitude=float(rng.uniform(0.02, 0.08)))
    if rng.random() < 0.25:
        out = scanline_noise(out, rng, amplitude=float(rng.uniform(0.01, 0.05)))
    return out


def random_appearance(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vary what a clean image looks like before it is degraded: mild blur, grey-level contrast.

    With probability 0.3 a Gaussian blur of sigma 0.3-1.0 px (a softer scan or a coarser
    reconstruction), with probability 0.3 a gamma of 0.6-1.6 (SEM and CT map phases to other grey
    levels than the rendered images do). The result is both the clean target and the input to the
    noise, so the net learns to denoise such images, not to sharpen or re-map them.
    """
    from scipy import ndimage as ndi

    out = _check_image(image)
    if rng.random() < 0.3:
        out = ndi.gaussian_filter(out, float(rng.uniform(0.3, 1.0)), mode="reflect")
    if rng.random() < 0.3:
        out = np.clip(out, 0.0, 1.0) ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_lowres(image: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Blur + downsampling with a random blur (sigma 0.3-0.7 LR pixels) and mild noise, for SR training."""
    lr = blur_downsample(image, scale, sigma=float(rng.uniform(0.3, 0.7)))
    return add_noise(lr, rng, sigma=float(rng.uniform(0.0, 0.02)))
