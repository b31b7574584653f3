"""Phase segmentation of grey-level images: multi-Otsu thresholds that the user can adjust."""

from __future__ import annotations

import numpy as np

from battgai.microstructure.io import to_float

#: Histogram estimation uses at most this many pixels (a strided subsample of larger stacks).
MAX_HISTOGRAM_PIXELS = 2_000_000


def multiotsu_thresholds(image: np.ndarray, classes: int = 3) -> np.ndarray:
    """Thresholds that split a grey image into ``classes`` phases (multi-level Otsu [1]_).

    Parameters
    ----------
    image : ndarray, 2D or 3D
        Any supported dtype; scaled to [0, 1] first.
    classes : int
        Number of phases, 2 to 5.

    Returns
    -------
    thresholds : ndarray of float, shape ``(classes - 1,)``, increasing, in [0, 1].

    Raises
    ------
    ValueError
        For fewer than ``classes`` distinct grey levels (e.g. a constant image).

    References
    ----------
    .. [1] Liao, Chen & Chung, "A fast algorithm for multilevel thresholding", J. Inf. Sci. Eng.
       17 (2001) 713.

    Examples
    --------
    >>> img = np.repeat([0.1, 0.5, 0.9], 100).reshape(10, 30)
    >>> multiotsu_thresholds(img, 3).shape
    (2,)
    """
    from skimage.filters import threshold_multiotsu

    if not 2 <= classes <= 5:
        raise ValueError(f"classes must be between 2 and 5, got {classes}")
    values = to_float(image).ravel()
    if values.size > MAX_HISTOGRAM_PIXELS:
        values = values[:: values.size // MAX_HISTOGRAM_PIXELS + 1]
    if np.unique(values).size < classes:
        raise ValueError(
            f"the image has fewer than {classes} distinct grey levels; it cannot be split into {classes} phases"
        )
    if classes == 2:
        from skimage.filters import threshold_otsu

        return np.array([threshold_otsu(values)], dtype=float)
    return np.asarray(threshold_multiotsu(values, classes=classes), dtype=float)


def apply_thresholds(image: np.ndarray, thresholds: np.ndarray | list[float]) -> np.ndarray:
    """Label each pixel by the interval of ``thresholds`` its grey level falls in (0 = darkest).

    Parameters
    ----------
    image : ndarray, 2D or 3D
    thresholds : sequence of float
        Increasing thresholds on the [0, 1] scale of :func:`~battgai.microstructure.io.to_float`.

    Returns
    -------
    labels : ndarray of uint8, same shape as ``image``, values 0 .. len(thresholds).
    """
    t = np.asarray(thresholds, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("thresholds must be a non-empty 1D sequence")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"thresholds must be strictly increasing, got {t.tolist()}")
    return np.digitize(to_float(image), t).astype(np.uint8)


def segment(image: np.ndarray, classes: int = 3, thresholds: list[float] | None = None) -> np.ndarray:
    """Multi-Otsu segmentation, or the given ``thresholds`` when the user adjusted them.

    Examples
    --------
    >>> img = np.repeat([0.1, 0.5, 0.9], 100).reshape(10, 30)
    >>> np.unique(segment(img, 3)).tolist()
    [0, 1, 2]
    """
    t = multiotsu_thresholds(image, classes) if thresholds is None else thresholds
    return apply_thresholds(image, t)
