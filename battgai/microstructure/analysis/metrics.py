"""Per-phase microstructure metrics of segmented 2D images and 3D volumes.

Plain functions on label arrays (phases numbered 0, 1, ...). Lengths are in pixels / voxels;
multiply a specific surface area by ``1 / voxel_size`` for physical units.

References
----------
.. [1] Torquato, *Random Heterogeneous Materials*, Springer (2002): volume fraction, specific
   surface, two-point correlation.
.. [2] Kench, Squires & Cooper, "TauFactor 2: A GPU accelerated python tool for
   microstructural analysis", JOSS 8 (2023) 5358: tortuosity factor.
.. [3] Hildebrand & Rüegsegger, "A new method for the model-independent assessment of thickness
   in three-dimensional images", J. Microsc. 185 (1997) 67: local thickness (pore / particle
   size distribution), by the distance-transform method of porespy (Gostick et al., JOSS 4
   (2019) 1296).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Default largest side for tortuosity: the SOR solve on 64^3 takes ~20 s on one CPU core.
TORTUOSITY_MAX_SIDE = 64


def _check_labels(labels: np.ndarray, phase: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be a 2D image or a 3D volume, got shape {labels.shape}")
    if labels.dtype.kind not in "uib":
        raise ValueError(f"labels must be integers (a segmented image), got dtype {labels.dtype}")
    if min(labels.shape) < 2:
        raise ValueError(f"labels must be at least 2 pixels along every axis, got {labels.shape}")
    if phase is not None and phase < 0:
        raise ValueError(f"phase must be >= 0, got {phase}")
    return labels


def volume_fraction(labels: np.ndarray, phase: int) -> float:
    """Fraction of pixels / voxels that belong to ``phase`` [1]_.

    Examples
    --------
    >>> volume_fraction(np.array([[0, 1], [1, 1]]), 1)
    0.75
    """
    labels = _check_labels(labels, phase)
    return float(np.mean(labels == phase))


def specific_surface_area(labels: np.ndarray, phase: int) -> float:
    """Interface area of ``phase`` per unit total volume (per pixel in 2D: perimeter per area) [1]_.

    The interface is the marching-cubes (3D) or marching-squares (2D) iso-surface of the phase
    indicator at 0.5, so a smooth sphere is not over-counted the way voxel faces would be. The
    outer faces of the image are not counted as interface.

    Returns
    -------
    float, in 1 / pixel. 0 when the phase is absent or fills the image.
    """
    labels = _check_labels(labels, phase)
    mask = (labels == phase).astype(np.float32)
    if mask.min() == mask.max():
        return 0.0
    if labels.ndim == 2:
        from skimage.measure import find_contours

        length = sum(float(np.sum(np.hypot(*np.diff(c, axis=0).T))) for c in find_contours(mask, 0.5))
        return length / mask.size
    from skimage.measure import marching_cubes, mesh_surface_area

    verts, faces, _, _ = marching_cubes(mask, 0.5)
    return float(mesh_surface_area(verts, faces)) / mask.size


def two_point_correlation(labels: np.ndarray, phase: int, r_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged two-point correlation S2(r) of ``phase`` [1]_.

    S2(r) is the probability that two points a distance r apart both lie in the phase; S2(0) is
    the volume fraction and S2 decays to its square. Computed with FFTs on the zero-padded image
    and divided by the number of point pairs at each offset, so no periodicity is assumed.

    Parameters
    ----------
    r_max : int, optional
        Largest distance, default a quarter of the smallest side.

    Returns
    -------
    r : ndarray of int, distances 0 .. r_max
    s2 : ndarray of float
    """
    labels = _check_labels(labels, phase)
    mask = (labels == phase).astype(np.float64)
    r_max = int(r_max if r_max is not None else min(mask.shape) // 4)
    if not 1 <= r_max < min(mask.shape):
        raise ValueError(f"r_max must be between 1 and {min(mask.shape) - 1}, got {r_max}")
    # Padding by r_max (not by the full size) is enough to stop offsets up to r_max wrapping round.
    size = [s + r_max for s in mask.shape]
    axes = tuple(range(mask.ndim))
    f = np.fft.rfftn(mask, size, axes=axes)
    pairs = np.fft.irfftn(f * np.conj(f), size, axes=axes)
    offsets = [np.minimum(np.arange(n), n - np.arange(n)) for n in size]
    # Number of point pairs at offset d along an axis of length s is s - |d|.
    counts = np.ones([1] * mask.ndim)
    for ax, (d, s) in enumerate(zip(offsets, mask.shape, strict=True)):
        shape = [1] * mask.ndim
        shape[ax] = -1
        counts = counts * np.maximum(s - d, 0).reshape(shape)
    grids = np.meshgrid(*offsets, indexing="ij", sparse=True)
    rbin = np.rint(np.sqrt(sum(g.astype(float) ** 2 for g in grids))).astype(int)
    keep = (rbin <= r_max) & (counts > 0)
    s2_map = pairs / np.maximum(counts, 1)
    total = np.bincount(rbin[keep], weights=s2_map[keep], minlength=r_max + 1)
    n = np.bincount(rbin[keep], minlength=r_max + 1)
    return np.arange(r_max + 1), total / np.maximum(n, 1)


def correlation_length(labels: np.ndarray, phase: int, r_max: int | None = None) -> float:
    """Distance at which the normalised two-point correlation of ``phase`` first drops below 1/e [1]_.

    The normalised correlation is (S2(r) - p^2) / (p - p^2), 1 at r = 0 and 0 for uncorrelated
    points (p: volume fraction). The crossing is interpolated linearly between integer distances:
    on 64^3 crops the length is 5-7 voxels, where whole-voxel steps alone would be 15 % apart.

    Parameters
    ----------
    r_max : int, optional
        Largest distance searched, default a quarter of the smallest side.

    Returns
    -------
    float, in pixels. ``nan`` when the phase is absent or fills the image; ``inf`` when the
    correlation stays above 1/e up to ``r_max``.

    Examples
    --------
    >>> stripes = np.tile(np.repeat([0, 1], 8), (64, 4))  # bands 8 pixels wide
    >>> round(correlation_length(stripes, 1), 2)
    4.19
    """
    r, s2 = two_point_correlation(labels, phase, r_max)
    p = float(s2[0])
    if not 0.0 < p < 1.0:
        return float("nan")
    c = (s2 - p * p) / (p - p * p)
    below = np.flatnonzero(c < np.exp(-1.0))
    if below.size == 0:
        return float("inf")
    i = int(below[0])
    return float(r[i - 1] + (c[i - 1] - np.exp(-1.0)) / (c[i - 1] - c[i]))


@dataclasses.dataclass(frozen=True)
class Tortuosity:
    """Tortuosity factor of one phase along one axis, with what was actually solved."""

    phase: int
    axis: int
    tau: float
    effective_diffusivity: float
    solved_shape: tuple[int, ...]
    note: str = ""


def percolates(mask: np.ndarray, axis: int) -> bool:
    """Whether one connected cluster of ``mask`` (face-connected) touches both faces normal to ``axis``."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(mask)
    first = np.unique(np.take(lab, 0, axis=axis))
    last = np.unique(np.take(lab, -1, axis=axis))
    return bool(np.setdiff1d(np.intersect1d(first, last), [0]).size)


def tortuosity(
    labels: np.ndarray, phase: int, axis: int = 0, max_side: int = TORTUOSITY_MAX_SIDE, device: str = "cpu"
) -> Tortuosity:
    """Tortuosity factor of ``phase`` along ``axis`` from a steady diffusion solve (TauFactor [2]_).

    Volumes with a side above ``max_side`` are centre-cropped to ``max_side`` along that side
    first (the solve time grows quickly with size) and the result says so in ``note``.

    Returns
    -------
    Tortuosity
        ``tau = inf`` and ``effective_diffusivity = 0`` when the phase does not connect the two
        faces normal to ``axis``.
    """
    labels = _check_labels(labels, phase)
    if not 0 <= axis < labels.ndim:
        raise ValueError(f"axis must be in 0..{labels.ndim - 1}, got {axis}")
    note = ""
    if max(labels.shape) > max_side:
        starts = [(s - min(s, max_side)) // 2 for s in labels.shape]
        labels = labels[tuple(slice(a, a + min(s, max_side)) for a, s in zip(starts, labels.shape, strict=True))]
        note = f"centre-cropped to {labels.shape} (max side {max_side}) to keep the solve short"
    mask = (labels == phase).astype(np.uint8)
    if not percolates(mask, axis):
        return Tortuosity(phase, axis, float("inf"), 0.0, mask.shape, (note + "; " if note else "")
                          + "phase does not connect the two faces")
    import contextlib
    import io

    import taufactor

    solver = taufactor.Solver(np.ascontiguousarray(np.moveaxis(mask, axis, 0)), device=device)
    with contextlib.redirect_stdout(io.StringIO()):  # taufactor prints progress
        tau = float(np.ravel(solver.solve(verbose=False))[0])
    return Tortuosity(phase, axis, tau, float(np.ravel(solver.D_eff)[0]), mask.shape, note)


def local_thickness(mask: np.ndarray) -> np.ndarray:
    """Local thickness [3]_: radius of the largest inscribed ball covering each pixel of ``mask``.

    Distance-transform method (as porespy's ``local_thickness(method="dt")``): for each integer
    radius r, from large to small, every pixel within r of a centre whose distance to the
    background is at least r gets thickness r if it has none yet. Radii are in pixels; 0 outside
    the mask.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask, bool)
    dist = ndi.distance_transform_edt(mask)
    thickness = np.zeros(mask.shape, np.float32)
    for r in range(int(np.floor(dist.max())), 0, -1):
        centres = dist >= r
        covered = ndi.distance_transform_edt(~centres) < r
        thickness[covered & mask & (thickness == 0)] = r
    # Pixels thinner than one pixel still belong to the phase: give them the smallest size.
    thickness[mask & (thickness == 0)] = 0.5
    return thickness


def size_distribution(labels: np.ndarray, phase: int, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Pore / particle size distribution of ``phase`` from the local thickness map [3]_.

    Each pixel of the phase gets the radius of the largest inscribed sphere (disc in 2D) that
    covers it (:func:`local_thickness`); the histogram of those radii, weighted by volume, is
    the size distribution.

    Returns
    -------
    radius : ndarray, bin centres in pixels
    fraction : ndarray, volume fraction of the phase in each bin (sums to 1)

    Examples
    --------
    >>> yy, xx = np.mgrid[:41, :41]
    >>> disc = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100).astype(int)
    >>> radius, frac = size_distribution(disc, 1, bins=10)
    >>> bool(radius[np.argmax(frac)] > 9)
    True
    """
    labels = _check_labels(labels, phase)
    mask = labels == phase
    if not mask.any():
        raise ValueError(f"phase {phase} is absent from the image")
    thickness = local_thickness(mask)[mask]
    hist, edges = np.histogram(thickness, bins=bins, range=(0, max(float(thickness.max()), 1.0)))
    return 0.5 * (edges[1:] + edges[:-1]), hist / hist.sum()


@dataclasses.dataclass(frozen=True)
class PhaseMetrics:
    """Summary metrics of one phase (lengths in pixels).

    ``size_radius`` / ``size_fraction`` are the :func:`size_distribution`; ``mean_diameter`` is
    twice its volume-weighted mean radius; ``tortuosity`` has one value per axis when it was
    computed (``inf``: the phase does not connect the faces).
    """

    phase: int
    volume_fraction: float
    specific_surface_area: float
    mean_diameter: float
    size_radius: np.ndarray
    size_fraction: np.ndarray
    tortuosity: tuple[float, ...] = ()


def phase_metrics(labels: np.ndarray, with_tortuosity: bool = False, max_side: int = TORTUOSITY_MAX_SIDE,
                  progress=None) -> list[PhaseMetrics]:
    """:class:`PhaseMetrics` of every phase present; tortuosity (slow) only when asked.

    Parameters
    ----------
    progress : callable(done, total), optional
        Called after each phase (tortuosity solves dominate the time).
    """
    labels = _check_labels(labels)
    phases = [int(p) for p in np.unique(labels)]
    out = []
    for i, p in enumerate(phases):
        radius, frac = size_distribution(labels, p)
        taus: tuple[float, ...] = ()
        if with_tortuosity:
            taus = tuple(tortuosity(labels, p, ax, max_side=max_side).tau for ax in range(labels.ndim))
        out.append(PhaseMetrics(p, volume_fraction(labels, p), specific_surface_area(labels, p),
                                float(2 * np.sum(radius * frac)), radius, frac, taus))
        if progress is not None:
            progress(i + 1, len(phases))
    return out
