"""How an enhancer is scored: PSNR / SSIM, the SR benchmark's low-/high-resolution pair, the fixed noise cases.

Shared by the training loop (a bundled net's card metrics) and ``python -m battgai bench
microstructure``, so the card and the bench measure the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from battgai.microstructure.enhancement import degrade

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: The fixed noise cases of the denoising benchmark.
NOISE_CASES: dict[str, Degradation] = {
    "Poisson-Gaussian (sigma 0.05, 100 photons/unit)": lambda im, rng: degrade.add_noise(im, rng, 0.05, 100.0),
    "noise sigma 0.03 + CT rings + streaks + SEM scan lines": lambda im, rng: degrade.scanline_noise(
        degrade.streak_artifacts(degrade.ring_artifacts(degrade.add_noise(im, rng, 0.03), rng, 0.05),
                                 rng, 0.05), rng, 0.03),
}
SR_BLUR = 0.5


def psnr_ssim(reference: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of ``test`` against ``reference``, both float in [0, 1].

    References
    ----------
    Wang et al., "Image quality assessment: from error visibility to structural similarity",
    IEEE Trans. Image Process. 13 (2004) 600.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if reference.shape != test.shape:
        raise ValueError(f"images must have the same shape, got {reference.shape} and {test.shape}")
    return (float(peak_signal_noise_ratio(reference, test, data_range=1.0)),
            float(structural_similarity(reference, test, data_range=1.0)))


def lowres_pair(image: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(low-res input, high-res reference) of the SR benchmark."""
    hr = degrade.crop_to_multiple(image, scale)
    return degrade.blur_downsample(hr, scale, sigma=SR_BLUR), hr


def model_metrics(model, images: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean held-out PSNR / SSIM of a bundled net under the benchmark's fixed degradations."""
    from battgai.microstructure.enhancement.enhance import apply_model, bicubic

    scale = model.config.scale
    out: dict[str, float] = {}
    if scale == 1:
        for key, case in zip(("poisson_gaussian", "artefacts"), NOISE_CASES.values(), strict=True):
            scores = [psnr_ssim(im, apply_model(case(im, np.random.default_rng(i)), model))
                      for i, im in enumerate(images.values())]
            out[f"psnr_db_{key}"] = round(float(np.mean([s[0] for s in scores])), 3)
            out[f"ssim_{key}"] = round(float(np.mean([s[1] for s in scores])), 4)
        return out
    scores, base = [], []
    for im in images.values():
        lr, hr = lowres_pair(im, scale)
        scores.append(psnr_ssim(hr, apply_model(lr, model)))
        base.append(psnr_ssim(hr, bicubic(lr, scale)))
    out["psnr_db"] = round(float(np.mean([s[0] for s in scores])), 3)
    out["ssim"] = round(float(np.mean([s[1] for s in scores])), 4)
    out["psnr_gain_vs_bicubic_db"] = round(out["psnr_db"] - float(np.mean([b[0] for b in base])), 3)
    return out
