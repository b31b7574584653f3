"""2D / 3D fusion: a coarse volume + a fine 2D image -> a fine volume closer to the truth than upsampling."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from battgai.microstructure.analysis import metrics
from battgai.microstructure.generation import fusion
from tests.conftest import ROOT


def _blobs(side: int, seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=(side,) * 3), 2.5, mode="wrap")
    return (field > np.quantile(field, 0.6)).astype(np.uint8)


def test_fusion_restores_the_surface_area_the_coarse_volume_lost():
    truth, other = _blobs(64, 0), _blobs(64, 1)
    coarse = fusion.degrade(truth, 1, 4)
    assert coarse.shape == (16, 16, 16) and coarse.mean() == pytest.approx(truth.mean())
    res = fusion.fuse(coarse, other[32] == 1, 4)
    ssa = {name: metrics.specific_surface_area(v.astype(np.uint8), 1)
           for name, v in (("truth", truth == 1), ("fused", res.volume), ("baseline", res.baseline))}
    err = {k: abs(ssa[k] / ssa["truth"] - 1) for k in ("fused", "baseline")}
    assert err["baseline"] > 0.15  # trilinear interfaces are as smooth as the coarse voxels
    assert err["fused"] < 0.1 and err["fused"] < err["baseline"] / 2
    assert res.volume.shape == truth.shape and abs(res.volume.mean() - truth.mean()) < 1e-3


def test_fusion_refuses_what_it_cannot_do():
    coarse = fusion.degrade(_blobs(32, 0), 1, 4)
    with pytest.raises(ValueError, match="256\\^3"):
        fusion.fuse(np.full((80, 80, 80), 0.5, np.float32), np.eye(32, dtype=bool), 4)
    with pytest.raises(ValueError, match="show the phase and something else"):
        fusion.fuse(coarse, np.ones((32, 32), bool), 4)
    with pytest.raises(ValueError, match="3D low-resolution volume and a 2D image"):
        fusion.fuse(coarse[0], np.eye(32, dtype=bool), 4)


def test_the_page_fuses_the_synthetic_demo_and_saves_it(monkeypatch, tmp_path):
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    at = AppTest.from_file(str(ROOT / "pages" / "microstructure.py"), default_timeout=180).run()
    at.radio(key="task").set_value("Fuse 2D + 3D (high-resolution volume)").run()
    at.radio(key="fuse_source").set_value("Synthetic demo").run()
    at.checkbox(key="fuse_tort").uncheck().run()
    at.button(key="run_fusion").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    res, table = at.session_state["fusion"]["result"]
    assert res.volume.shape == (128, 128, 128)
    fused, base = table[0]["specific surface area (1/voxel)"], table[1]["specific surface area (1/voxel)"]
    assert fused > 1.2 * base
    assert at.session_state["fusion"]["zip"][:2] == b"PK"
