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
