"""Reference codes (PoreSpy, TauFactor) on volumes whose answers are known, and the bench table that uses them."""

import numpy as np
import pytest

from battgai.bench import microstructure_generator as genbench
from battgai.microstructure import io as msio
from battgai.microstructure.analysis import metrics, reference
from battgai.microstructure.generation import generator, genfit


def _slab(n: int = 24) -> np.ndarray:
    """Pore (0) where the last index < n / 2, solid (1) elsewhere: one flat interface of n x n, straight channels."""
    vol = np.ones((n, n, n), np.uint8)
    vol[:, :, : n // 2] = 0
    return vol


def test_flat_interface_area_ignores_the_crop_faces():
    n = 24
    # One plane in n^3 voxels; the faces of the crop are not interface. Both meshes span the voxel
    # centres 0 .. n - 1, so the plane is (n - 1)^2 in both codes.
    expected = (n - 1) ** 2 / n**3
    assert reference.surface_area(_slab(n)) == pytest.approx(expected, rel=0.01)
    assert metrics.specific_surface_area(_slab(n), 0) == pytest.approx(expected, rel=0.01)


def test_sphere_surface_area_is_four_pi_r_squared():
    n, r = 40, 12
    zz, yy, xx = np.mgrid[:n, :n, :n] - (n - 1) / 2
    vol = (zz**2 + yy**2 + xx**2 > r * r).astype(np.uint8)  # pore ball in solid
    assert reference.surface_area(vol) == pytest.approx(4 * np.pi * r * r / n**3, rel=0.05)
    assert reference.surface_area(np.zeros((16, 16, 16), np.uint8)) == 0.0


def test_straight_channels_have_tortuosity_one_and_a_blocked_axis_is_inf():
    vol = _slab()
    assert reference.tortuosity(vol, axis=0) == pytest.approx(1.0, abs=0.02)
    # Along the last axis the pore half ends at the solid half: no path between the faces.
    assert reference.tortuosity(vol, axis=2) == float("inf")


def test_summary_of_a_set_with_non_percolating_crops_is_median_and_share_never_inf():
    s = reference.summarise_tortuosity([1.8, 2.0, 2.4, float("inf")])
    assert s.median == pytest.approx(2.2) and s.percolating_share == 0.75
    assert s.mean == pytest.approx((1.8 + 2.0 + 2.4) / 3) and np.isfinite(s.mean)
    none = reference.summarise_tortuosity([float("inf")] * 2)
    assert none.percolating_share == 0.0 and np.isnan(none.mean)
    with pytest.raises(ValueError, match="non-empty"):
        reference.summarise_tortuosity([])


def test_correlation_length_doubles_with_the_structure_and_is_near_the_own_code():
    vol = msio.demo_labels((32, 32, 32), porosity=0.45, seed=0)
    coarse = vol.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    small, large = reference.correlation_length(vol), reference.correlation_length(coarse)
    assert 1.8 < large / small < 2.2
    # PoreSpy labels 1-voxel bins [r, r + 1) at r + 0.5, the own code rounds to r: at most a voxel apart.
    assert abs(large - metrics.correlation_length(coarse, 0, 32)) < 1.0
    assert np.isnan(reference.correlation_length(np.ones((16, 16, 16), np.uint8)))


def test_bench_table_marks_misses_with_their_numbers():
    tau = reference.summarise_tortuosity([2.0, float("inf")])
    real = {"reference": {"porosity": 0.4, "surface area": 0.10, "correlation length": 6.0, "tortuosity": 2.0},
            "own": {"porosity": 0.4, "surface area": 0.13, "correlation length": 5.8}, "tau": tau}
    gen = {"reference": {"porosity": 0.4, "surface area": 0.12, "correlation length": 6.1, "tortuosity": 2.1},
           "own": {"porosity": 0.4, "surface area": 0.15, "correlation length": 5.9}, "tau": tau}
    row = {"material": "M", "side": 64, "real": real, "generated": gen, "n": (2, 2), "seconds": 0.1,
           "floor": {k: 0.01 for k in genbench.REFERENCE_STATS}, "config": generator.GeneratorConfig()}
    md = genbench.reference_markdown([row])
    assert "| M | 64^3 | 2 / 2 | surface area | 0.1 | 20.0 % | 15.4 % | 30.0 % | 1.0 % | **missed** |" in md
    assert "missed: M 64^3 surface area 20.0 %." in md
    assert "percolating 50.0 %" in md and "inf %" not in md


def test_reference_and_own_code_on_a_real_crop():
    try:
        crop = msio.real_volume("test", "taufactor")[:64, :64, :64]
    except FileNotFoundError as err:
        pytest.skip(f"shared TauFactor volume absent: {err}")
    assert reference.porosity(crop) == pytest.approx(metrics.volume_fraction(crop, 0))
    # Both are marching cubes; PoreSpy's blur with a ball of radius 1 rounds off the voxel staircase.
    assert reference.surface_area(crop) < metrics.specific_surface_area(crop, 0)


def test_fit_reference_picks_grid_values_and_refuses_unknown_settings():
    real = msio.demo_labels((64, 64, 64), porosity=0.45, seed=0)
    grid = {"smooth_nmc": (0.0, 2.0)}
    model = genfit.fit_reference(real, sides=(32,), grid=grid, sweeps=1, log=lambda _: None)
    assert model.config.smooth_nmc in grid["smooth_nmc"]
    with pytest.raises(ValueError, match="GeneratorConfig"):
        genfit.fit_reference(real, grid={"blur": (1.0,)}, log=lambda _: None)
