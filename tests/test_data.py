"""Loaders of the shared real data (skip with the reason when the data is absent)."""

from __future__ import annotations

import numpy as np

from battgai.core import data
from tests.conftest import requires_data


@requires_data("mp_20")
def test_mp20_has_properties_and_cifs():
    df = data.load_mp20("test")
    assert {"material_id", "cif", "e_above_hull", "band_gap", "spacegroup.number"} <= set(df.columns)
    assert len(df) > 1000 and df["material_id"].is_unique
    assert df["cif"].iloc[0].lstrip().startswith("# generated using pymatgen")


@requires_data("nasa_pcoe")
def test_nasa_curves_and_summary_agree():
    cells = data.nasa_cells()
    assert len(cells) == 15 and "B0005" in cells
    summary = data.load_nasa_summary()
    curves = data.load_nasa_curves("B0005")
    assert list(curves.columns) == ["cycle", "time_s", "voltage_v", "current_a", "temperature_c"]
    n_cycles = summary.loc[summary["cell"] == "B0005", "cycle"].nunique()
    assert curves["cycle"].nunique() == n_cycles == 168


@requires_data("microstructure")
def test_microstructure_volume_is_labelled_3d():
    vol = data.load_image("taufactor_nmc_electrode/electrode.tiff")
    assert vol.ndim == 3 and min(vol.shape) >= 64
    assert 2 <= len(np.unique(vol[:16])) <= 4  # a segmented volume: a few phase labels
