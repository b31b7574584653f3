"""Transfer to a researcher's own cells: relative frame, bad input, the upload path, CLI, NASA leave-group-out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from battgai.health import schema
from battgai.health.estimation import owncells
from battgai.health.estimation.transfer import Frame, TransferError, features, fit_frame, relative

NOMINAL = 1.1


def other_lab_csv(n_cells: int = 4, n_cycles: int = 30, seed: int = 0, far_cell: bool = False) -> bytes:
    """An LFP-like lab unlike NASA: 1.1 Ah, 3.3 V plateau, 2.5 V cut-off, 2 s sampling, mA, discharge positive,
    no temperature column, its own column names. Cells start at different capacities and fade at different rates."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_cells):
        c0 = NOMINAL * rng.uniform(0.97, 1.03) * (1.6 if far_cell and k == 1 else 1.0)
        fade = rng.uniform(0.12, 0.25)
        r0 = rng.uniform(0.03, 0.05)
        for cyc in range(1, n_cycles + 1):
            age = (cyc - 1) / (n_cycles - 1)
            cap = c0 * (1 - fade * age)
            # Run on past the nominal charge so that, as on a cycler, the discharge ends at the 2.5 V cut-off.
            t = np.arange(0.0, cap / 1.1 * 3600.0 * 1.03, 2.0)
            soc = 1 - 1.1 * t / 3600.0 / cap
            # Plateau with a slope that steepens as the cell ages, steep knees at both ends.
            v = (3.28 + 0.05 * (soc - 0.5) * (1 + age) + 0.12 * np.exp(-(1 - soc) * 25)
                 - 0.5 * np.exp(-soc * 30) - 1.1 * (r0 + 0.03 * age) + rng.normal(0, 0.001, t.size))
            keep = v >= 2.5
            for ti, vi in zip(t[keep], v[keep], strict=True):
                rows.append((f"LFP{k + 1}", cyc, ti, vi * 1000, 1100.0))
    df = pd.DataFrame(rows, columns=["Cell", "Cycle_Index", "Test_Time(s)", "Voltage(mV)", "Current(mA)"])
    return df.to_csv(index=False).encode()


@pytest.fixture(scope="module")
def lab() -> schema.CyclingData:
    return schema.read_upload(other_lab_csv(), None, NOMINAL, "other_lab.csv")


def test_upload_of_another_lab_maps_without_help(lab):
    assert "no temperature column" in " ".join(lab.notes)
    curves = owncells.curves_of(lab)
    assert curves.grid.min() < 2.7 and curves.grid.max() < 3.5  # its own range, not NASA's 4.2 -> 2.7 V
    frame = fit_frame(curves, ["LFP1"])
    assert frame.v_bot < 2.75 < 3.2 < frame.v_top < 3.5
    assert abs(frame.c_ref / NOMINAL - 1) < 0.05


def test_features_do_not_depend_on_capacity_or_voltage_scale():
    from battgai.health.preprocess import resample

    base = resample(schema.demo_data(n_cells=2, n_cycles=6))
    other = base.subset(np.arange(len(base)))
    other.q, other.nominal_ah, other.current_a = base.q * 0.55, base.nominal_ah * 0.55, base.current_a * 0.55
    other.grid, other.v_start = base.grid * 0.8 + 0.1, base.v_start * 0.8 + 0.1  # another chemistry's voltages
    fa = features(relative(base, fit_frame(base, ["DEMO1"])))
    fb = features(relative(other, fit_frame(other, ["DEMO1"])))
    np.testing.assert_allclose(fa, fb, rtol=1e-6, atol=1e-9)


def test_one_labelled_cell_corrects_the_lab_and_scores_every_pipeline(lab):
    curves = owncells.curves_of(lab)
    res = owncells.run(curves, ["LFP1"], None)
    e = res.estimates
    assert set(e["cell_id"]) == {"LFP2", "LFP3", "LFP4"} and len(e) == 90
    assert (e["soh_sigma"] > 0).all() and e["soh_estimate"].between(0.5, 1.2).all()
    err = (e["soh_estimate"] - e["soh_in_file"]) * 100
    # the labelled cell ties the estimates to this lab's capacity (no NASA scale): a few points at most
    assert abs(err.mean()) < 4 and np.sqrt(np.mean(err**2)) < 5
    assert {"labelled only (ridge)", "labelled + mixup (gbm)"} <= set(res.scores["pipeline"])
    text = res.csv().decode()
    assert text.splitlines()[0] == ("cell_id,cycle,soh_estimate,soh_sigma,soh_low,soh_high,extrapolating,soh_in_file,"
                                   "capacity_source")
    assert res.provenance.settings["labelled_cells"] == ["LFP1"]
    # one labelled cell, no source: nothing to hold out, and the band says it is not calibrated
    assert "NOT calibrated" in res.provenance.settings["band"] and res.provenance.settings["band_scale"] == 1.0
    assert any("not calibrated" in w for w in res.warnings)
    np.testing.assert_allclose(e["soh_high"] - e["soh_estimate"], 2 * e["soh_sigma"], rtol=1e-9)


def test_band_scale_is_the_conformal_quantile_over_two():
    z = np.abs(np.random.default_rng(0).normal(0, 3.0, 20_000))  # sigma under-stated three times
    assert owncells.band_scale(z) == pytest.approx(3.0 * 1.96 / 2, rel=0.03)
    assert owncells.band_scale(np.zeros(0)) == 1.0
    assert owncells.band_scale(np.array([0.5, 1.0, 9.0])) == pytest.approx(4.5)  # few scores: the largest


def test_two_labelled_cells_calibrate_the_band_by_leaving_each_out(lab):
    curves = owncells.curves_of(lab)
    res = owncells.run(curves, ["LFP1", "LFP2"], None)
    s = res.provenance.settings
    assert "NOT calibrated" not in s["band"] and s["band_calibration_errors"] == 60  # 2 cells x 30 cycles
    assert not any("not calibrated" in w for w in res.warnings)


def test_estimates_beyond_the_labelled_range_say_they_extrapolate(lab):
    curves = owncells.curves_of(lab)
    young = curves.subset((curves.cell_id != "LFP1") | (curves.cycle <= 10))  # labelled cell: early life only
    res = owncells.run(young, ["LFP1"], None)
    late = res.estimates["cycle"] > 25
    assert res.estimates.loc[late, "extrapolating"].mean() > 0.5
    assert res.estimates.loc[res.estimates["cycle"] <= 5, "extrapolating"].mean() < 0.5
    assert any("extrapolate" in w for w in res.warnings)


def test_bad_input_is_refused_with_a_message(lab):
    curves = owncells.curves_of(lab)
    with pytest.raises(TransferError, match="Mark at least one cell"):
        owncells.run(curves, [], None)
    two = curves.subset((curves.cell_id != "LFP1") | (curves.cycle <= 2))
    with pytest.raises(TransferError, match="at least 5 cycles"):
        owncells.run(two, ["LFP1"], None)
    with pytest.raises(TransferError, match="not in the data"):
        owncells.run(curves, ["B0005"], None)
    far = owncells.curves_of(schema.read_upload(other_lab_csv(far_cell=True), None, NOMINAL, "far.csv"))
    with pytest.raises(TransferError, match="LFP2"):
        owncells.run(far, ["LFP1", "LFP2", "LFP3"], None)


def test_a_source_cell_that_never_reaches_the_window_does_not_break_the_calibration(lab):
    curves = owncells.curves_of(lab)
    a = curves.subset(curves.cell_id == "LFP1")
    b = curves.subset(curves.cell_id != "LFP1")
    b.v_start = np.where(b.cell_id == "LFP3", b.grid[-1] + 0.05, b.v_start)  # LFP3: load-on below any window
    target = owncells._lab_relative(a, ["LFP1"], (0.05, 0.4))
    fit = lambda src, train: owncells.fit_pipeline(owncells.TRANSFER, src, train, (0.05, 0.4))  # noqa: E731
    errors = owncells.calibration_errors({"a": a, "b": b}, target, (0.05, 0.4), fit)
    # lab b plays the researcher's lab with LFP2, then LFP4 labelled (LFP3 has no usable curve); lab a has one cell
    assert list(errors) == ["b"] and len(errors["b"]) == 60 and np.isfinite(errors["b"]).all()


def test_the_band_is_calibrated_per_group_on_the_pipeline_used(lab):
    curves = owncells.curves_of(lab)
    a, b = curves.subset(np.isin(curves.cell_id, ["LFP1", "LFP2"])), curves.subset(~np.isin(curves.cell_id,
                                                                                           ["LFP1", "LFP2"]))
    target = owncells._lab_relative(a, ["LFP1"], (0.05, 0.4))
    target = target.subset(target.cell_id == "LFP1")
    seen = []

    def fit(src, train):
        seen.append(len(train))
        return owncells.fit_pipeline("labelled only (gbm)", src, train, (0.05, 0.4))

    errors = owncells.calibration_errors({"a": a, "b": b}, target, (0.05, 0.4), fit)
    assert set(errors) == {"a", "b"} and len(seen) == 4  # each lab's two cells labelled in turn
    # a pipeline without its own sigma: the scores are its absolute errors (relative SOH)
    assert 0 < np.median(errors["a"]) < 0.2
    scale, per_group = owncells.group_band_scale(errors)
    assert scale == max(per_group.values()) == max(owncells.band_scale(e) for e in errors.values())
    assert owncells.group_band_scale({}) == (1.0, {})


def test_curves_that_never_reach_the_window_get_no_estimate(lab):
    curves = owncells.curves_of(lab)
    cut = curves.subset(np.arange(len(curves)))
    short = (cut.cell_id == "LFP4") & (cut.cycle > 20)
    cut.v_start = np.where(short, cut.grid[-1] + 0.05, cut.v_start)  # load-on below the window
    res = owncells.run(cut, ["LFP1"], None)
    assert not ((res.estimates["cell_id"] == "LFP4") & (res.estimates["cycle"] > 20)).any()
    assert any("never reach the window" in w for w in res.warnings)
    cut.v_start = np.where(cut.cell_id == "LFP1", cut.grid[-1] + 0.05, cut.v_start)  # labelled cell: never
    with pytest.raises(TransferError, match="No labelled curve covers the window"):
        owncells.run(cut, ["LFP1"], None)


def test_cli_writes_estimates_scores_and_provenance(tmp_path):
    from battgai.cli import main

    f = tmp_path / "lab.csv"
    f.write_bytes(other_lab_csv(n_cells=3, n_cycles=12))
    with pytest.raises(SystemExit) as done:
        main(["health-transfer", str(f), "--labelled", "LFP1", "--nominal", "1.1", "--out", str(tmp_path / "o"),
              "--no-source"])
    assert done.value.code == 0
    est = pd.read_csv(tmp_path / "o" / "soh_estimates.csv")
    assert len(est) == 24 and est["soh_sigma"].gt(0).all()
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["settings"]["nominal_ah"] == 1.1
    with pytest.raises(SystemExit, match="not in the data"):
        main(["health-transfer", str(f), "--labelled", "NOPE", "--nominal", "1.1", "--out", str(tmp_path / "p")])


def test_frame_window_voltages():
    f = Frame(3.4, 2.4, 1.0, (0.1, 0.5))
    assert f.window_v == pytest.approx((3.3, 2.9)) and f.grid[0] == 3.4 and f.grid[-1] == 2.4


@pytest.fixture(scope="module")
def nasa():
    from battgai.core.data import DataNotFound
    from battgai.health.preprocess import nasa_curves

    try:
        return nasa_curves()
    except DataNotFound as exc:
        pytest.skip(f"NASA shared data absent: {exc}")


def test_leave_group_out_on_nasa_beats_source_only_without_bias(nasa):
    from battgai.bench.health_transfer import leave_group_out
    from battgai.health.estimation.owncells import TRANSFER

    res = leave_group_out(nasa, (0.05, 0.6), max_labelled=2)
    t = res.table()
    assert set(res.scores["group"]) == {"24 C / 2 A", "24 C / 4 A", "43 C / 4 A"}
    assert t.loc[TRANSFER, "all groups"] < 0.7 * t.loc["source only (ridge)", "all groups"]
    assert abs(t.loc[TRANSFER, "bias, all groups"]) < 2 < abs(t.loc["source only (ridge)", "bias, all groups"])
    # the band is calibrated on the source groups only, and holds about 95 % on the scored group
    assert 0.85 <= res.coverage() <= 1.0 and res.coverage() > res.coverage(calibrated=False)


def test_nasa_source_and_the_other_lab(nasa, lab):
    labs = owncells.nasa_source_labs(nasa)
    assert not any("B0038" in set(v.cell_id) for v in labs.values())  # mixed-current cells left out
    res = owncells.run(owncells.curves_of(lab), ["LFP1"], labs)
    t = res.scores.set_index("pipeline")
    # NASA alone is far off on this chemistry; the labelled cell removes most of the bias
    assert abs(t.loc[owncells.TRANSFER, "bias_soh_points"]) < abs(t.loc["source only (ridge)", "bias_soh_points"]) / 3
    assert t.loc[owncells.TRANSFER, "rmse_soh_points"] < 6 < t.loc["source only (ridge)", "rmse_soh_points"]


def test_bench_block_is_replaced_in_place_and_targets_can_miss():
    from battgai.bench import replace_block
    from battgai.bench.health import TRANSFER_END, TRANSFER_START
    from battgai.bench.health_transfer import targets
    from battgai.health.estimation.owncells import TRANSFER

    old = f"intro\n{TRANSFER_START}\nold numbers\n{TRANSFER_END}\nwall time"
    new = replace_block(old, "health-transfer", f"{TRANSFER_START}\nnew\n{TRANSFER_END}")
    assert "old numbers" not in new and new.startswith("intro") and new.endswith("wall time")
    assert replace_block("intro", "health-transfer", "block").endswith("block")
    t = pd.DataFrame({"all groups": [2.0, 4.0, 2.5], "bias, all groups": [0.5, 5.0, 0.1]},
                     index=[TRANSFER, "source only (ridge)", "labelled only (ridge)"])
    rows = targets({(0.05, 0.4): {"table": t, "best_simple": "labelled only (ridge)", "coverage": 0.9,
                                     "coverage_raw": 0.7}})
    assert "**missed**" in rows[2] and "| hit |" in rows[3]  # 2.0 vs 2.5 is only 20 % better (30 % needed)
    t.loc["labelled only (ridge)", "all groups"] = 3.5
    rows = targets({(0.05, 0.4): {"table": t, "best_simple": "labelled only (ridge)", "coverage": 0.95,
                                  "coverage_raw": 0.7}})
    assert "| hit |" in rows[2] and "95% (before calibration 70%) | hit |" in rows[4]


def test_band_table_measures_each_group_apart():
    from battgai.bench.health_transfer import band_table

    errors = pd.DataFrame({"group": ["a"] * 4 + ["b"] * 4, "err": [1.0, -1.0, 1.0, 3.0, 4.0, -4.0, 4.0, -4.0],
                           "sigma": [1.0] * 8, "band_scale": [2.0] * 8})
    t = band_table(errors)
    assert t.loc["a", "coverage"] == 0.75 and t.loc["b", "coverage"] == 0.0  # pooled, 3 of 8 would hide b
    assert t.loc["all groups", "coverage"] == 0.375 and t.loc["b", "half_width"] == 2.0
    assert t.loc["b", "rmse"] == 4.0 and t.loc["b", "width_over_rmse"] == 0.5


def test_pick_verdict_meets_within_five_percent_and_misses_a_losing_transfer():
    from battgai.bench.health_transfer import pick_verdict
    from battgai.health.estimation.owncells import TRANSFER

    t = pd.Series({"source only (ridge)": 13.3, "labelled only (ridge)": 12.6, "labelled only (gbm)": 7.8,
                   TRANSFER: 12.9})
    ok, text = pick_verdict(t, 8.1, 0)
    assert ok and "+3.8%" in text and "the transfer loses" in text
    assert not pick_verdict(t, 12.6, 0)[0]  # the worse labelled-only row: 62 % above the best
    t[TRANSFER] = 7.8 * 1.04  # within 5 % of the best, yet it loses to labelled-only: never to be picked
    assert not pick_verdict(t, 7.8 * 1.04, 6)[0] and pick_verdict(t, 7.8, 0)[0]


def test_feature_source_groups_are_batches_protocols_and_datasets():
    from battgai.bench.health_transfer import feature_groups

    ids = np.array(["2017-05-12/2017-05-12_battery-1", "2C_battery-1", "R2.5_battery-3", "1-7",
                    "Dataset_1_NCA_battery/CY25-025_1-#1"])
    assert list(feature_groups(ids)) == ["2017-05-12", "2C", "R2.5", "1", "Dataset_1_NCA_battery"]


def test_the_picked_row_pools_every_run_estimates():
    from battgai.bench.health_transfer import GroupOutResult

    errors = pd.DataFrame({"group": ["a", "a", "b"], "err": [3.0, -3.0, 6.0]})
    r = GroupOutResult(pd.DataFrame(), errors).picked_row()
    assert r["a"] == 3.0 and r["b"] == 6.0 and r["all groups"] == pytest.approx(np.sqrt(18)) and r.iloc[-1] == 2.0
