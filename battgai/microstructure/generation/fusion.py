"""2D / 3D fusion: a low-resolution 3D volume plus a high-resolution 2D image -> a high-resolution 3D volume.

A low-resolution scan (X-ray CT) sees the whole electrode in 3D but blurs everything
below its voxel; a high-resolution 2D image (SEM, a nano-CT slice) of the same
material shows the fine interfaces, in 2D only. Dahari et al. [1]_ fuse the two with
a GAN whose 2D critics see high-resolution slices; on 2 CPU cores this module does
the statistical counterpart, in the spirit of Quiblier's level cuts [2]_:

1. the low-resolution volume gives the phase fraction of every coarse voxel, upsampled
   trilinearly to the fine grid (where the phase is, at the coarse scale);
2. a fine-scale Gaussian random field is added (what the coarse voxels cannot see);
3. the sum is cut at the level that keeps the low-resolution volume fraction.

The field's width and strength are fitted so that slices of the result match the 2D
image: the width to its two-point correlation at short range, the strength (by
bisection) to its perimeter per unit area. Without the field (the trilinear baseline)
interfaces are as smooth as the coarse voxels and the surface area is far too low.
One phase at a time (the phase against the rest).

References
----------
.. [1] Dahari et al., "Fusion of complementary 2D and 3D mesostructural datasets using
   generative adversarial networks", Adv. Energy Mater. 13 (2023) 2202407.
.. [2] Quiblier, "A new three-dimensional modeling technique for studying porous media",
   J. Colloid Interface Sci. 98 (1984) 84.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from battgai.microstructure.analysis import metrics

Progress = Callable[[int, int], None]

#: Widths (fine voxels) tried for the fine-scale field.
WIDTHS = (0.7, 1.0, 1.5, 2.0)
BISECTION_STEPS = 12
#: Largest fused volume, in voxels (256^3).
MAX_OUTPUT_VOXELS = 256**3
#: Slices of the result compared with the 2D image while fitting.
FIT_SLICES = 8


@dataclasses.dataclass(frozen=True)
class FusionResult:
    volume: np.ndarray  # bool, the phase in the fused high-resolution volume
    baseline: np.ndarray  # bool, trilinear upsampling cut at the same volume fraction
    scale: int
    width: float  # of the fine-scale field, in fine voxels
    strength: float
    target_perimeter: float  # of the 2D image, 1 / px
    seconds: float
    seed: int


def phase_fraction(lowres: np.ndarray, phase_value: float | None = None) -> np.ndarray:
    """Fraction of the phase in each coarse voxel: from labels (``phase_value`` given) or a grey partial-volume scan.

    A grey volume is mapped linearly between its darkest and brightest class medians (multi-Otsu),
    so a voxel half filled with the bright phase reads 0.5.
    """
    if phase_value is not None:
        return (lowres == phase_value).astype(np.float32)
    from battgai.microstructure.analysis.segment import multiotsu_thresholds
    from battgai.microstructure.io import to_float

    x = to_float(lowres)
    t = multiotsu_thresholds(x, 2)[0]
    lo, hi = float(np.median(x[x <= t])), float(np.median(x[x > t]))
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _cut(field: np.ndarray, fraction: float) -> np.ndarray:
    return field > np.quantile(field, 1 - fraction)


def _slices(volume: np.ndarray) -> list[np.ndarray]:
    return [volume[k] for k in np.linspace(0, len(volume) - 1, FIT_SLICES).astype(int)]


def _perimeter(images: list[np.ndarray]) -> float:
    return float(np.mean([metrics.specific_surface_area(m.astype(np.uint8), 1) for m in images]))


def _short_s2(images: list[np.ndarray], r_max: int = 4) -> np.ndarray:
    """Mean two-point correlation of the phase for r = 1..r_max along both image axes."""
    out = []
    for m in images:
        m = m.astype(np.float32)
        out.append([0.5 * (np.mean(m[r:] * m[:-r]) + np.mean(m[:, r:] * m[:, :-r])) for r in range(1, r_max + 1)])
    return np.mean(out, axis=0)


def fuse(lowres_fraction: np.ndarray, highres_mask: np.ndarray, scale: int, seed: int = 0,
         progress: Progress | None = None) -> FusionResult:
    """Fuse a coarse 3D phase-fraction volume with a fine 2D mask of the same phase (see the module doc).

    Parameters
    ----------
    lowres_fraction : ndarray (Z, Y, X) in [0, 1], see :func:`phase_fraction`
    highres_mask : ndarray (H, W) bool, the phase in the high-resolution 2D image (its pixel = a fine voxel)
    scale : int, fine voxels per coarse voxel along each axis (2 to 8)
    """
    t0 = time.perf_counter()
    from scipy import ndimage as ndi

    if lowres_fraction.ndim != 3 or highres_mask.ndim != 2:
        raise ValueError(f"need a 3D low-resolution volume and a 2D image, got {lowres_fraction.shape} and "
                         f"{highres_mask.shape}")
    if not 2 <= scale <= 8:
        raise ValueError(f"scale must be 2 to 8, got {scale}")
    n_out = lowres_fraction.size * scale**3
    if n_out > MAX_OUTPUT_VOXELS:
        raise ValueError(f"the fused volume would have {n_out:,} voxels; the limit is {MAX_OUTPUT_VOXELS:,} (256^3). "
                         "Crop the low-resolution volume or lower the scale.")
    mask2d = np.asarray(highres_mask, bool)
    if mask2d.all() or not mask2d.any() or min(mask2d.shape) < 16:
        raise ValueError("the 2D image must show the phase and something else, at least 16 x 16 pixels")
    fraction = float(lowres_fraction.mean())
    if not 0 < fraction < 1:
        raise ValueError("the low-resolution volume must hold the phase and something else")
    coarse = ndi.zoom(lowres_fraction.astype(np.float32), scale, order=1, mode="nearest") - 0.5
    baseline = _cut(coarse, fraction)
    target_p, target_s2 = _perimeter([mask2d]), _short_s2([mask2d])
    noise = np.random.default_rng(seed).normal(size=coarse.shape).astype(np.float32)
    best = None
    total, done = len(WIDTHS) * BISECTION_STEPS, 0
    for width in WIDTHS:
        field = ndi.gaussian_filter(noise, width)
        field /= field.std()
        lo, hi = 0.0, 4.0
        for _ in range(BISECTION_STEPS):  # more strength -> more interface
            strength = 0.5 * (lo + hi)
            p = _perimeter(_slices(_cut(coarse + strength * field, fraction)))
            lo, hi = (strength, hi) if p < target_p else (lo, strength)
            done += 1
            if progress is not None:
                progress(done, total)
        volume = _cut(coarse + strength * field, fraction)
        gap = float(np.abs(_short_s2(_slices(volume)) - target_s2).sum())
        if best is None or gap < best[0]:
            best = (gap, volume, width, strength)
    _, volume, width, strength = best
    return FusionResult(volume, baseline, scale, width, strength, target_p, time.perf_counter() - t0, seed)


def degrade(labels: np.ndarray, phase: int, scale: int) -> np.ndarray:
    """Coarse phase fractions of a fine label volume: the mean of each ``scale``^3 block (partial volume)."""
    z, y, x = (s // scale for s in labels.shape)
    m = (labels[: z * scale, : y * scale, : x * scale] == phase).astype(np.float32)
    return m.reshape(z, scale, y, scale, x, scale).mean(axis=(1, 3, 5))


def demo_pair(side: int = 128, scale: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic (low-resolution 8-bit volume, high-resolution 2D label image) of one blob microstructure.

    Made by battgai, not real data: Gaussian blobs (40 % bright phase) at ``side``^3, averaged over
    ``scale``^3 blocks for the volume; the 2D image is a slice of a second sample of the same process.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    vols = []
    for _ in range(2):
        field = ndi.gaussian_filter(rng.normal(size=(side,) * 3), 2, mode="wrap")
        vols.append((field > np.quantile(field, 0.6)).astype(np.uint8))
    coarse = np.round(degrade(vols[0], 1, scale) * 255).astype(np.uint8)
    return coarse, vols[1][side // 2]
