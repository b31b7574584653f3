"""The field's reference implementations of the phase statistics, each number naming its definition.

Generated and real volumes are compared with the codes other groups use, so a number here can be set
beside a paper's: PoreSpy's ``metrics`` module [1]_ for the surface area and the two-point
correlation, TauFactor [2]_ for the tortuosity factor. :mod:`.metrics` holds battgai's own code for
the same statistics; the bench reports both on real volumes, because two codes measuring one
statistic must agree before either number is a claim.

Definitions (the keys of :data:`DEFINITIONS`, used as row labels by the bench):

- ``porosity``: fraction of voxels in the phase (``porespy.metrics.porosity``).
- ``surface area``: area of PoreSpy's marching-cubes mesh of the phase (``porespy.tools.mesh_region``:
  the mask blurred with a ball of radius 1, then ``skimage.measure.marching_cubes``) by
  ``porespy.metrics.mesh_surface_area``, divided by the number of voxels. ``mesh_region`` pads the
  crop with background, so its mesh also closes the phase on the crop's outer faces; those
  triangles are dropped (the crop's edge is not an interface).
- ``correlation length``: r at which PoreSpy's two-point correlation
  (``porespy.metrics.two_point_correlation``, 1-voxel radial bins at their centres),
  normalised as (S2(r) - phi^2) / (phi - phi^2), first falls below 1/e; linear interpolation.
- ``tortuosity``: TauFactor's steady-diffusion solver (``taufactor.Solver``), along the first axis
  unless asked otherwise; ``inf`` where the phase does not connect the two faces. A set of crops is
  summarised by :func:`summarise_tortuosity` (median and percolating share), never by an infinite mean.

References
----------
.. [1] Gostick et al., "PoreSpy: A Python toolkit for quantitative analysis of porous media
   images", JOSS 4 (2019) 1296.
.. [2] Kench, Squires & Cooper, "TauFactor 2: A GPU accelerated python tool for microstructural
   analysis", JOSS 8 (2023) 5358.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np

from battgai.microstructure.analysis import metrics

#: Statistic -> the definition its number follows (printed beside every reference number).
DEFINITIONS = {
    "porosity": "porespy.metrics.porosity",
    "surface area": "porespy.metrics.mesh_surface_area(porespy.tools.mesh_region) / volume, crop faces dropped",
    "correlation length": "r where (S2 - phi^2) / (phi - phi^2) of porespy.metrics.two_point_correlation < 1/e",
    "tortuosity": "taufactor.Solver, first axis",
}


def _mask(volume: np.ndarray, phase: int) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be a 3D label volume, got shape {volume.shape}")
    if volume.dtype.kind not in "uib":
        raise ValueError(f"volume must hold integer labels, got dtype {volume.dtype}")
    if min(volume.shape) < 8:
        raise ValueError(f"volume must be at least 8 voxels along every axis, got {volume.shape}")
    return volume == phase


def porosity(volume: np.ndarray, phase: int = 0) -> float:
    """Volume fraction of ``phase`` by ``porespy.metrics.porosity`` [1]_."""
    import porespy as ps

    return float(ps.metrics.porosity(_mask(volume, phase)))


def surface_area(volume: np.ndarray, phase: int = 0) -> float:
    """Interface area of ``phase`` per voxel by PoreSpy's mesh [1]_ (see the module's definitions).

    Returns
    -------
    float, in 1 / voxel; 0 when the phase is absent or fills the volume.

    Notes
    -----
    ``mesh_region`` pads with background and shifts the vertices back, so voxel centres of the
    crop lie at ``0 .. n - 1``; a triangle whose centroid lies outside that range along some axis
    closes the phase on the crop's face (it lies in the padding) and is dropped. Like the own
    code's mesh, the kept one spans the voxel centres: a flat interface across an n^3 crop has
    area (n - 1)^2.
    """
    import porespy as ps
    from skimage.morphology import ball

    mask = _mask(volume, phase)
    if mask.all() or not mask.any():
        return 0.0
    mesh = ps.tools.mesh_region(mask, strel=ball(1))
    centroids = mesh.verts[mesh.faces].mean(axis=1)
    inside = np.all((centroids >= 0) & (centroids <= np.array(mask.shape, float) - 1), axis=1)
    area = ps.metrics.mesh_surface_area(verts=mesh.verts, faces=mesh.faces[inside])
    return float(area) / mask.size


def correlation_length(volume: np.ndarray, phase: int = 0) -> float:
    """r where PoreSpy's normalised two-point correlation of ``phase`` first falls below 1/e [1]_.

    Returns
    -------
    float, in voxels; ``nan`` when the phase is absent or fills the volume, ``inf`` when the
    correlation stays above 1/e up to half the smallest side (PoreSpy's largest distance).
    """
    import porespy as ps

    mask = _mask(volume, phase)
    phi = float(mask.mean())
    if not 0.0 < phi < 1.0:
        return float("nan")
    # One bin per voxel of distance (PoreSpy's default of 100 bins is coarser than that only on
    # volumes above 200 voxels a side); the bins' centres are the distances PoreSpy reports.
    tpcf = ps.metrics.two_point_correlation(mask, bins=np.arange(min(mask.shape) // 2 + 1))
    r, s2 = np.asarray(tpcf.distance, float), np.asarray(tpcf.probability_scaled, float)
    c = (s2 - phi * phi) / (phi - phi * phi)
    below = np.flatnonzero(c < np.exp(-1.0))
    if below.size == 0:
        return float("inf")
    i = int(below[0])
    if i == 0:
        return float(r[0])
    return float(r[i - 1] + (c[i - 1] - np.exp(-1.0)) / (c[i - 1] - c[i]) * (r[i] - r[i - 1]))


def tortuosity(volume: np.ndarray, phase: int = 0, axis: int = 0) -> float:
    """Tortuosity factor of ``phase`` along ``axis`` by TauFactor's solver [2]_; ``inf`` if it does not percolate.

    The percolation check (a face-connected cluster touching both faces normal to ``axis``) comes
    first because TauFactor's answer on a disconnected phase is not a tortuosity.
    """
    import taufactor

    mask = _mask(volume, phase)
    if not 0 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if not metrics.percolates(mask, axis):
        return float("inf")
    solver = taufactor.Solver(np.ascontiguousarray(np.moveaxis(mask, axis, 0).astype(np.uint8)), device="cpu")
    with contextlib.redirect_stdout(io.StringIO()):  # taufactor prints progress
        return float(np.ravel(solver.solve(verbose=False))[0])


@dataclasses.dataclass(frozen=True)
class TortuositySummary:
    """Tortuosity of a set of crops: median over all crops (``inf`` counts as large) and the percolating share.

    ``mean`` is over the percolating crops only, ``nan`` when none percolates; it is never ``inf``.
    """

    median: float
    percolating_share: float
    mean: float
    n: int


def summarise_tortuosity(values: list[float] | np.ndarray) -> TortuositySummary:
    """Median and percolating share of per-crop tortuosities (``inf``: the crop does not percolate).

    A mean over crops is infinite as soon as one crop does not percolate; the median is defined as
    long as more than half percolate, and the share says how many did.

    Examples
    --------
    >>> s = summarise_tortuosity([1.5, 2.0, float("inf")])
    >>> s.median, round(s.percolating_share, 3), s.mean
    (2.0, 0.667, 1.75)
    """
    values = np.asarray(values, float)
    if values.size == 0 or np.isnan(values).any():
        raise ValueError("values must be a non-empty list of tortuosities (inf where a crop does not percolate)")
    finite = values[np.isfinite(values)]
    return TortuositySummary(float(np.median(values)), finite.size / values.size,
                             float(finite.mean()) if finite.size else float("nan"), int(values.size))
