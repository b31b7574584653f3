"""Every enhancement method on a stack runs slice by slice: bounded memory, progress per slice, stoppable.

The methods are 2D (skimage's non-local means and total variation, the nets, the upscalers), so a
stack is their result on each slice, and running them one slice at a time gives the same numbers
as a call on the whole stack. What it changes is the cost of a stack at the upload limit (2^25
voxels): whole-stack calls held float64 copies of the stack (non-local means and total variation
convert their whole input) and reported nothing for minutes. Here each slice is processed (an
integer stack converted to float32 one slice at a time, on the *stack's* intensity range) and
written into one preallocated float32 output; after each slice ``progress(done, total)`` is called.

A page stops a run from that callback: Streamlit raises its stop exception at the next page call,
the progress bar's update, and :func:`battgai.core.engine.run` cancels the job the same way.
Nothing here catches it, so a stopped run ends at the next slice boundary and its partial output
is dropped with this frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from battgai.microstructure.io import intensity_range, to_float

#: Called with (slices done, slices in all); whatever it raises stops the work.
Progress = Callable[[int, int], None]


def map_slices(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *, scale: int = 1,
               progress: Progress | None = None) -> np.ndarray:
    """``fn`` on a 2D image, or on each slice of a 3D stack, into one float32 array.

    Parameters
    ----------
    fn : callable
        Takes one slice as it is in ``image`` and returns the processed slice, ``scale`` times
        larger in-plane.
    image : ndarray, 2D ``(H, W)`` or 3D ``(Z, H, W)``
    scale : int
        In-plane scale of ``fn``'s output (1 for denoising).
    progress : callable(done, total), optional
        Called after each slice of a stack (not for a 2D image, which is one slice). Whatever it
        raises propagates at once: the remaining slices are not processed.

    Returns
    -------
    ndarray of float32, ``(H * scale, W * scale)`` or ``(Z, H * scale, W * scale)``.

    Examples
    --------
    >>> stack = np.zeros((3, 8, 8), np.float32)
    >>> map_slices(lambda s: s + 1, stack, progress=lambda d, t: print(d, t)).shape
    1 3
    2 3
    3 3
    (3, 8, 8)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.asarray(fn(image), np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected a 2D image or a 3D stack, got shape {image.shape}")
    z, h, w = image.shape
    out = np.empty((z, h * scale, w * scale), np.float32)
    for i, sl in enumerate(image):
        out[i] = fn(sl)
        if progress is not None:
            progress(i + 1, z)
    return out


def float_slice(image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A converter of ``image``'s slices to float32 on the whole image's intensity range.

    ``to_float(slice)`` alone would read each slice on its own range (a slice whose maximum fits
    in 8 bits of a 12-bit stack would be stretched 16 times); a float32 image in [0, 1] is passed
    on uncopied, as :func:`~battgai.microstructure.io.to_float` would return it unchanged.
    """
    r = intensity_range(image)
    if np.asarray(image).dtype == np.float32 and (r.lo, r.hi) == (0.0, 1.0):
        return lambda sl: sl
    return lambda sl: to_float(sl, r)


def _order_keys(values: np.ndarray) -> np.ndarray:
    """float32 values as uint32 keys in the same order (sign bit flipped for positives, all bits for negatives)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    return np.where(bits & 0x80000000, ~bits, bits | 0x80000000)


def _from_key(key: int) -> np.float32:
    bits = key & 0x7FFFFFFF if key & 0x80000000 else ~key & 0xFFFFFFFF
    return np.array([bits], np.uint32).view(np.float32)[0]


def class_medians(image: np.ndarray, classes: np.ndarray, n: int) -> list[np.float32 | None]:
    """The median of a float32 ``image`` over each class ``0 .. n - 1`` of ``classes``, as ``np.median`` gives it.

    ``np.median(image[classes == c])`` copies the class's values, up to a float32 copy of the stack per class.
    Here the ranks are found by a radix select on the values' bit patterns, one slice at a time: a histogram
    of the upper 16 bits per class finds the bucket that holds each middle rank, a second pass over that
    bucket's lower 16 bits the exact value; an even count averages the two middle values as ``np.median`` does.

    Parameters
    ----------
    image : ndarray of float32, 2D or 3D, without NaN
    classes : ndarray of uint8, the shape of ``image``, values below ``n``
    n : int

    Returns
    -------
    list of float32, None for an empty class.
    """
    pairs = list(zip(image if image.ndim == 3 else [image], classes if classes.ndim == 3 else [classes], strict=True))
    high = np.zeros(n << 16, np.int64)
    for im, cl in pairs:
        high += np.bincount((cl.astype(np.int64).ravel() << 16) | (_order_keys(im).ravel() >> 16), minlength=n << 16)
    cum = np.cumsum(high.reshape(n, 1 << 16), axis=1)
    counts = cum[:, -1]
    # (class, rank) -> (upper 16 bits, rank among the values sharing them)
    where = {}
    for c in range(n):
        for rank in ({(int(counts[c]) - 1) // 2, int(counts[c]) // 2} if counts[c] else set()):
            top = int(np.searchsorted(cum[c], rank, side="right"))
            where[(c, rank)] = (top, rank - (int(cum[c, top - 1]) if top else 0))
    low = {(c, top): np.zeros(1 << 16, np.int64) for (c, _), (top, _) in where.items()}
    for im, cl in pairs:
        keys = _order_keys(im)
        for (c, top), hist in low.items():
            hist += np.bincount(keys[(cl == c) & ((keys >> 16) == top)] & 0xFFFF, minlength=1 << 16)
    value = {(c, rank): _from_key((top << 16) | int(np.searchsorted(np.cumsum(low[(c, top)]), r, side="right")))
             for (c, rank), (top, r) in where.items()}
    return [np.mean(np.array([value[(c, (int(counts[c]) - 1) // 2)], value[(c, int(counts[c]) // 2)]], np.float32))
            if counts[c] else None for c in range(n)]
