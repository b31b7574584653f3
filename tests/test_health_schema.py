"""Cycling schema: loaders, column mapping, unit and sign detection, refusals."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from battgai.health import schema
from battgai.health.schema import MappingError, demo_data, from_dataframe, guess_mapping, read_upload
from battgai.uploads.errors import UploadError
from tests.conftest import requires_data


def _lab_file() -> pd.DataFrame:
    """Another lab's export: own column names, mA, minutes, discharge positive, no temperature."""
    s = demo_data(n_cells=1, n_cycles=3, seed=1).samples
    return pd.DataFrame({
        "Cycle_Index": s["cycle"], "Test_Time(min)": s["time_s"] / 60.0,
        "Voltage(V)": s["voltage_v"], "Current(mA)": -s["current_a"] * 1000.0,
    })


def test_guess_mapping_finds_other_lab_columns():
    m = guess_mapping(list(_lab_file().columns))
    assert m["cycle"] == "Cycle_Index"
    assert m["time_s"] == "Test_Time(min)"
    assert m["voltage_v"] == "Voltage(V)"
    assert m["current_a"] == "Current(mA)"
    assert m["temperature_c"] is None


def test_units_and_sign_detected():
    raw = _lab_file()
    ref = demo_data(n_cells=1, n_cycles=3, seed=1)
    d = from_dataframe(raw, guess_mapping(list(raw.columns)), nominal_ah=2.0)
    text = " ".join(d.notes)
    assert "mA" in text and "minutes" in text and "flipped" in text and "25 C" in text
    assert (d.samples["current_a"] < 0).mean() > 0.9
    np.testing.assert_allclose(d.samples["time_s"].to_numpy(), ref.samples["time_s"].to_numpy(), atol=1e-6)
    # capacity counted from current x time matches the demo's own capacity within a sample step
    np.testing.assert_allclose(d.cycles["capacity_ah"].to_numpy(), ref.cycles["capacity_ah"].to_numpy(),
                               atol=0.03)


def test_schema_file_round_trips_through_upload():
    data = schema.template_csv()
    d = read_upload(data, None, nominal_ah=2.0, name="template")
    assert len(d.cycles) == 2 and d.notes == []
    assert set(schema.SCHEMA) <= set(d.samples.columns)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["Voltage(V)"]), "voltage_v"),
        (lambda df: df.assign(**{"Voltage(V)": df["Voltage(V)"].where(df.index != 5)}), "NaN"),
        (lambda df: df.iloc[[0, 2, 1, *range(3, len(df))]].reset_index(drop=True), "backwards"),
        (lambda df: df[df["Cycle_Index"] == 1], "at least 2 cycles"),
        (lambda df: df.assign(**{"Voltage(V)": df["Voltage(V)"].to_numpy()[::-1]}), "charge data only"),
    ],
    ids=["missing-column", "nan", "non-monotonic-time", "single-cycle", "charge-only"],
)
def test_unmappable_files_are_refused_with_a_reason(mutate, message):
    raw = _lab_file()
    mapping = guess_mapping(list(_lab_file().columns))
    bad = mutate(raw)
    if "Voltage(V)" not in bad.columns:
        mapping = guess_mapping(list(bad.columns))
    with pytest.raises(MappingError, match=message):
        from_dataframe(bad, mapping, nominal_ah=2.0)


def test_charge_only_per_cycle_voltage_rising():
    raw = _lab_file()
    # every cycle's voltage rising under load, discharge-positive convention -> charge only
    raw["Voltage(V)"] = raw.groupby("Cycle_Index")["Voltage(V)"].transform(lambda v: v.to_numpy()[::-1])
    with pytest.raises(MappingError, match="charge data only"):
        from_dataframe(raw, guess_mapping(list(raw.columns)), nominal_ah=2.0)


def test_non_csv_upload_goes_through_the_validator():
    with pytest.raises(UploadError):
        read_upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, None, nominal_ah=2.0)


def test_bad_nominal_refused():
    raw = _lab_file()
    with pytest.raises(MappingError, match="nominal"):
        from_dataframe(raw, guess_mapping(list(raw.columns)), nominal_ah=0.0)


def test_demo_data_fades():
    d = demo_data(n_cells=2, n_cycles=10)
    assert d.cells == ["DEMO1", "DEMO2"]
    first, last = d.cycles.groupby("cell_id")["soh"].first(), d.cycles.groupby("cell_id")["soh"].last()
    assert (last < first - 0.1).all()
    buf = io.BytesIO(d.to_csv())
    assert "soh" in pd.read_csv(buf).columns


@requires_data("nasa_pcoe")
def test_load_nasa_two_cells():
    d = schema.load_nasa(["B0005", "B0029"])
    assert d.cells == ["B0005", "B0029"]
    assert d.samples["current_a"].min() < -3.5  # B0029 runs at 4 A
    assert d.cycles["soh"].between(0.4, 1.1).all()
    assert set(d.cycles["temperature_c"]) == {24.0, 43.0}
