"""Samples, demo data, intensity scaling, label rendering and the train / test split.

The shared data hold one raw grey-level X-ray slice and many segmented (label) images and volumes.
Training pairs are made from two kinds of clean images: the raw slice itself and grey images
*rendered* from segmented data (a grey level per phase, texture inside particles, partial-volume
blur), as suggested in ``shared/DESIGN.md``.

Split (fixed; training never reads a test pixel):

- raw X-ray slice ``liu_nmc811_xray_nanotomo/example_xy.tif`` (655 x 2048): columns 0-1471 train,
  columns 1536-2047 test (held-out *region*, a 64 px gap from the training columns);
- TauFactor volume (256^3): every 6th slice of z < 192 trains the nets (the generator has its own
  split: :func:`real_volume`);
- NREL MATBOX volume: slices z < 200 train;
- ``tldr_inpainter_nmc2d/nmc.png``: train;
- Dahari ``large_slice_nmc.tif`` and ``sem_image_half.tif``: test only (held-out *images*). The
  Dahari crop facets and the SEM stack are never used for training: the stack tiles are cut from
  ``sem_image_half`` and the facets may come from the same scan as the large slice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.core.data import load_image

RAW_SLICE = "liu_nmc811_xray_nanotomo/example_xy.tif"
RAW_TRAIN_COLS = (0, 1472)
RAW_TEST_COLS = (1536, 2048)
TAUFACTOR_VOLUME = "taufactor_nmc_electrode/electrode.tiff"
TAUFACTOR_TRAIN_Z = 192
NREL_VOLUME = "nrel_matbox_nmc_generated_cbd/nmc-1-cal_generatedCBD_bridge.tif"
NREL_TRAIN_Z = 200
TLDR_IMAGE = "tldr_inpainter_nmc2d/nmc.png"
DAHARI_SLICE = "dahari_superres_nmc/large_slice_nmc.tif"
DAHARI_SEM = "dahari_superres_nmc/sem_image_half.tif"

#: Grey level of pore, NMC and carbon-binder (CBD) phases when rendering labels (X-ray contrast:
#: dense NMC bright, CBD dim, pore dark).
PHASE_LEVELS = (0.15, 0.75, 0.40)


@dataclasses.dataclass(frozen=True)
class Sample:
    """A bundled sample from the shared data."""

    name: str
    relpath: str
    kind: str  # "grey" (raw intensities) or "labels" (segmented phases)
    description: str


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("NMC811 X-ray nano-CT slice (raw grey)", RAW_SLICE, "grey",
               "Li et al., Science 2022; 655 x 2048, uint8, raw reconstruction"),
        Sample("NMC 3-phase slice (segmented)", DAHARI_SLICE, "labels",
               "Dahari et al. 2023; 1024 x 1024, pore / NMC / CBD"),
        Sample("NMC electrode volume (segmented, 256^3)", TAUFACTOR_VOLUME, "labels",
               "TauFactor example electrode; pore / NMC / CBD"),
        Sample("NMC SEM stack (segmented, 4 slices)", "dahari_superres_nmc/sem_image_stack.tif", "labels",
               "Dahari et al. 2023; 4 x 427 x 427, pore / NMC / CBD"),
    )
}


def load_sample(name: str) -> np.ndarray:
    """Load a bundled sample as a 2D image or 3D stack (size-1 axes dropped).

    Raises
    ------
    KeyError
        Unknown sample name.
    DataNotFound
        The shared data are absent (callers fall back to :func:`demo_image`).
    """
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {sorted(SAMPLES)}")
    return np.squeeze(load_image(SAMPLES[name].relpath))


#: Bit depths detectors write into a wider integer container: a 12-bit scan stored as uint16 is read against
#: 4095, not 65535, so its contrast and noise sit on the scale the nets were trained on and the guard reasons in.
BIT_DEPTHS = (8, 10, 12, 14, 16, 32)
#: Percentiles that bound signed integer images with negative values (CT numbers), where a few dead or hot pixels
#: lie far outside: a minimum or maximum further than OUTLIER_SPAN of the percentiles' span beyond them is such a
#: pixel and is not taken as the range; a nearer one is the image's own value and is.
SIGNED_PERCENTILES = (0.01, 99.99)
OUTLIER_SPAN = 0.1


@dataclasses.dataclass(frozen=True)
class IntensityRange:
    """The values an image's ``[0, 1]`` scale stands for: ``lo`` maps to 0, ``hi`` to 1; ``what`` says why."""

    lo: float
    hi: float
    what: str


def intensity_range(image: np.ndarray) -> IntensityRange:
    """The image's own intensity range, as :func:`to_float` and :func:`from_float` use it.

    - unsigned (and non-negative signed) integers: ``0`` to ``2**bits - 1`` for the smallest bit depth of
      :data:`BIT_DEPTHS` that holds the image's maximum (a 12-bit scan in a uint16 file: 0 to 4095);
    - signed integers with negative values (CT numbers): minimum and maximum, each replaced by the 0.01 or
      99.99 percentile where it lies far beyond it (a dead or hot pixel, :data:`OUTLIER_SPAN`);
    - floats: ``[0, 1]`` when they lie in it, else their minimum and maximum; booleans: ``[0, 1]``.

    Examples
    --------
    >>> intensity_range(np.array([[0, 4000]], np.uint16)).what
    '12-bit in uint16 (0 to 4095)'
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("image has no pixels")
    if image.dtype == bool:
        return IntensityRange(0.0, 1.0, "binary")
    if image.dtype.kind in "ui":
        lo_val, hi_val = int(image.min()), int(image.max())
        if lo_val >= 0:
            container = 8 * image.dtype.itemsize - (image.dtype.kind == "i")
            bits = next((b for b in BIT_DEPTHS if b <= container and hi_val <= 2**b - 1), container)
            return IntensityRange(0.0, float(2**bits - 1), f"{bits}-bit in {image.dtype} (0 to {2**bits - 1})")
        p_lo, p_hi = (float(v) for v in np.percentile(image, SIGNED_PERCENTILES))
        far = OUTLIER_SPAN * max(p_hi - p_lo, 1.0)
        lo = p_lo if p_lo - lo_val > far else float(lo_val)
        hi = p_hi if hi_val - p_hi > far else float(hi_val)
        clipped = [name for name, cut in (("low", lo > lo_val), ("high", hi < hi_val)) if cut]
        return IntensityRange(lo, max(hi, lo + 1.0), f"{image.dtype} values {lo:g} to {hi:g}"
                              + (f" (isolated {' and '.join(clipped)} outliers set aside)" if clipped else ""))
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return IntensityRange(0.0, 1.0, f"{image.dtype} in [0, 1]")
    return IntensityRange(lo, hi if hi > lo else lo + 1.0, f"{image.dtype}, minimum to maximum ({lo:g} to {hi:g})")


def to_float(image: np.ndarray, intensity: IntensityRange | None = None) -> np.ndarray:
    """Scale an image to float32 on its own intensity range (:func:`intensity_range`): ``lo`` -> 0, ``hi`` -> 1.

    An 8-bit, a 12-bit-in-uint16 and a 16-bit scan of the same object look alike. Values of a
    signed image beyond its percentiles fall a little outside [0, 1] and are kept. A stack is
    converted one slice at a time, so no float64 copy of the whole stack is made.

    Parameters
    ----------
    image : ndarray
    intensity : IntensityRange, optional
        The range to read the image on instead of its own: a slice converted on its stack's range.

    Raises
    ------
    ValueError
        If the image has no pixels or contains NaN / inf.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        if image.size == 0:
            raise ValueError("image has no pixels")
        return image.astype(np.float32)
    r = intensity or intensity_range(image)
    if image.ndim < 3:
        return ((image.astype(np.float64) - r.lo) / (r.hi - r.lo)).astype(np.float32)
    out = np.empty(image.shape, np.float32)
    for i, sl in enumerate(image):
        out[i] = to_float(sl, r)
    return out


def from_float(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Map a float image on ``like``'s [0, 1] scale back to its intensity range and dtype (inverse of :func:`to_float`).

    An 8-bit input gives 8-bit output, a 12-bit one in uint16 gives 12-bit values in uint16 (rounded,
    clipped to the dtype's range); a float input outside [0, 1] gets its original minimum and maximum back.
    A stack is mapped one slice at a time (float64 copies of one slice only).
    """
    like = np.asarray(like)
    if like.dtype == bool:
        return np.asarray(image) >= 0.5
    r = intensity_range(like)
    dtype = like.dtype if like.dtype.kind in "uif" else np.dtype(np.float32)
    image = np.asarray(image)
    if image.ndim < 3:
        return _from_float(image, r, dtype)
    out = np.empty(image.shape, dtype)
    for i, sl in enumerate(image):
        out[i] = _from_float(sl, r, dtype)
    return out


def _from_float(image: np.ndarray, r: IntensityRange, dtype: np.dtype) -> np.ndarray:
    values = np.asarray(image, np.float64) * (r.hi - r.lo) + r.lo
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def phase_labels(labels: np.ndarray, max_phases: int = 8) -> np.ndarray:
    """Map the distinct values of a segmented image to 0, 1, ... in increasing order.

    The shared data encode phases as 0/1/2, 0/128/255 or 0/85/170; this gives one convention
    (0 = pore, 1 = NMC, 2 = CBD for every bundled NMC dataset).

    Raises
    ------
    ValueError
        If the image has more than ``max_phases`` distinct values (it is not a label image).
    """
    values, inverse = np.unique(np.asarray(labels), return_inverse=True)
    if len(values) > max_phases:
        raise ValueError(
            f"expected a segmented image with at most {max_phases} phases, got {len(values)} distinct values"
        )
    return inverse.reshape(np.shape(labels)).astype(np.uint8)


def render_grey(
    labels: np.ndarray,
    levels: tuple[float, ...] = PHASE_LEVELS,
    texture: float = 0.05,
    blur: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Render a clean grey-level image from a 2D label image.

    Each phase gets a grey level, a smooth random texture (grain contrast inside particles) and
    the image is blurred by a Gaussian point-spread function (partial-volume effect).

    Parameters
    ----------
    labels : ndarray of int, 2D
        Phases numbered 0 .. len(levels) - 1 (see :func:`phase_labels`).
    levels : tuple of float
        Grey level of each phase, in [0, 1].
    texture : float
        Standard deviation of the smooth texture added inside phases.
    blur : float
        Sigma of the Gaussian point-spread function, in pixels.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape as ``labels``.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"render_grey needs a 2D label image, got shape {labels.shape}")
    if labels.max() >= len(levels):
        raise ValueError(f"labels go up to {labels.max()} but only {len(levels)} grey levels were given")
    rng = np.random.default_rng(seed)
    grey = np.asarray(levels, dtype=np.float32)[labels]
    field = ndi.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 4.0)
    field *= texture / max(float(field.std()), 1e-8)
    grey = grey + field
    grey = ndi.gaussian_filter(grey, blur) if blur > 0 else grey
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def demo_labels(shape: tuple[int, ...] = (256, 256), porosity: float = 0.4, seed: int = 0) -> np.ndarray:
    """A small synthetic 3-phase NMC-like label image or volume made without any data.

    Particles are overlapping discs / spheres (NMC = 1); carbon-binder (2) is a thin shell in the
    pore space next to particles. Used by the page and the tests when the shared data are absent.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise ValueError(f"shape must be 2D or 3D with sides >= 8, got {shape}")
    radius = max(3.0, min(shape) / 10)
    solid = np.zeros(shape, bool)
    grid = np.indices(shape, sparse=True)
    target = 1.0 - porosity
    # Add particles until the solid fraction (NMC + binder) reaches the target.
    while solid.mean() < target * 0.8:
        centre = [rng.uniform(0, s) for s in shape]
        r = radius * rng.uniform(0.6, 1.3)
        solid |= sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < r * r
    labels = solid.astype(np.uint8)
    dist = ndi.distance_transform_edt(~solid)
    labels[(dist > 0) & (dist <= 2) & (rng.random(shape) < 0.6)] = 2
    return labels


def demo_image(shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A synthetic grey-level microstructure image (rendered :func:`demo_labels`), float32 in [0, 1]."""
    return render_grey(demo_labels(shape, seed=seed), seed=seed)


def _render_stack(vol: np.ndarray, z: range, seed: int) -> list[np.ndarray]:
    lab = phase_labels(vol)
    return [render_grey(lab[k], seed=seed + k) for k in z]


def training_images() -> list[np.ndarray]:
    """Clean float32 images of the training split (see the module docstring).

    Raises
    ------
    DataNotFound
        When the shared data are absent.
    """
    images = [to_float(load_image(RAW_SLICE))[:, RAW_TRAIN_COLS[0]:RAW_TRAIN_COLS[1]]]
    images += _render_stack(load_image(TAUFACTOR_VOLUME), range(0, TAUFACTOR_TRAIN_Z, 6), seed=100)
    images += _render_stack(load_image(NREL_VOLUME), range(0, NREL_TRAIN_Z, 10), seed=1000)
    images.append(render_grey(phase_labels(load_image(TLDR_IMAGE)), seed=5000))
    return images


def heldout_labels() -> dict[str, np.ndarray]:
    """Label images (0 pore, 1 NMC, 2 CBD) behind the two rendered held-out images."""
    return {
        "rendered NMC slice, held-out image (512x512)":
            phase_labels(np.squeeze(load_image(DAHARI_SLICE)))[256:768, 256:768],
        "rendered SEM image, held-out image (512x512)": phase_labels(np.squeeze(load_image(DAHARI_SEM)))[:512, :512],
    }


def heldout_images() -> dict[str, np.ndarray]:
    """Clean float32 held-out images: a held-out region of the raw slice and two held-out images.

    The last two are :func:`heldout_labels` rendered with :func:`render_grey` (seeds 7 and 8).
    """
    raw = to_float(load_image(RAW_SLICE))[:, RAW_TEST_COLS[0]:RAW_TEST_COLS[1]]
    rendered = {name: render_grey(lab, seed=seed) for (name, lab), seed in zip(heldout_labels().items(), (7, 8),
                                                                             strict=True)}
    return {"raw X-ray slice, held-out region (655x512)": raw, **rendered}


#: Volumes the generator is fitted and scored on: name -> (shared-data path, first held-out slice).
#: MATBOX has 251 slices; z >= 123 leaves 128 held-out slices, two layers of 64^3 crops.
GENERATOR_VOLUMES = {"taufactor": (TAUFACTOR_VOLUME, 128), "matbox": (NREL_VOLUME, 123)}


def real_volume(split: str, volume: str = "taufactor") -> np.ndarray:
    """Segmented NMC volume (0 pore, 1 NMC, 2 CBD) for the generator, cut in two along z.

    ``volume="taufactor"``: ``split="train"`` gives z < 128, ``"test"`` gives z >= 128 (two
    disjoint 128 x 256 x 256 halves). ``volume="matbox"`` (the second material): z < 123 and
    z >= 123 of the 251 x 301 x 301 MATBOX volume.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if volume not in GENERATOR_VOLUMES:
        raise ValueError(f"volume must be one of {sorted(GENERATOR_VOLUMES)}, got {volume!r}")
    path, first_test = GENERATOR_VOLUMES[volume]
    lab = phase_labels(load_image(path))
    return lab[:first_test] if split == "train" else lab[first_test:]


__all__ = [
    "SAMPLES",
    "IntensityRange",
    "Sample",
    "demo_image",
    "demo_labels",
    "heldout_images",
    "heldout_labels",
    "intensity_range",
    "load_sample",
    "phase_labels",
    "real_volume",
    "render_grey",
    "to_float",
    "training_images",
]
