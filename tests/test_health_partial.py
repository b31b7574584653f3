"""Partial discharges in a file without a capacity column: marked, never scored as the cells' capacities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgai.health import workflow
from battgai.health.estimation import owncells
from battgai.health.schema import MappingError, from_dataframe, guess_mapping, reaches_cutoff, score_basis

NOMINAL = 2.0
#: Every third cycle stops here, on the way down, instead of at the 2.7 V cut-off.
PARTIAL_STOP_V = 3.4


def cycler_file(partial_cells: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[tuple[str, int], float]]:
    """Two cells, 12 cycles each at 1 A, no capacity column; every third cycle (all cycles of
    ``partial_cells``) stops at :data:`PARTIAL_STOP_V`. Returns the file and each cycle's true SOH."""
    rows, truth = [], {}
    for k, cell in enumerate(("A", "B")):
        for cyc in range(1, 13):
            cap = NOMINAL * (0.98 - (0.015 + 0.005 * k) * (cyc - 1))
            t = np.arange(0.0, cap * 3600.0, 10.0)
            soc = 1 - t / 3600.0 / cap
            v = 3.45 + 0.6 * soc - 0.6 * np.exp(-15 * soc) + 0.08 * np.tanh(10 * (soc - 0.9)) - 0.05
            stop = PARTIAL_STOP_V if cell in partial_cells or cyc % 3 == 0 else 2.7
            keep = v >= stop
            rows.append(pd.DataFrame({"Cell": cell, "Cycle": cyc, "Time": t[keep], "Voltage": v[keep],
                                      "Current": -1.0}))
            truth[(cell, cyc)] = cap / NOMINAL
    return pd.concat(rows, ignore_index=True), truth


def load(partial_cells: tuple[str, ...] = (), cutoff_v: float | None = None):
    df, truth = cycler_file(partial_cells)
    return from_dataframe(df, guess_mapping(list(df.columns)), NOMINAL, cutoff_v=cutoff_v), truth


def test_each_counted_capacity_says_whether_the_discharge_was_full():
    data, _ = load()
    c = data.cycles
    expected = np.where(c["cycle"] % 3 == 0, "coulomb_partial", "coulomb_full")
    assert c["capacity_source"].tolist() == expected.tolist()
    assert "8 of 24 counted discharges stop above" in " ".join(data.notes)
    # the partial counts are well short of the capacity: scoring on them would be meaningless
    assert (c.loc[c["capacity_source"] == "coulomb_partial", "soh"] <
            c.loc[c["capacity_source"] == "coulomb_full", "soh"].min()).all()


def test_a_cell_that_never_reaches_cutoff_needs_the_stated_cutoff():
    data, _ = load(partial_cells=("B",))
    b = data.cycles[data.cycles["cell_id"] == "B"]
    assert (b["capacity_source"] == "coulomb_full").all()  # its own lowest end voltage looks like a cut-off
    stated, _ = load(partial_cells=("B",), cutoff_v=2.7)
    b = stated.cycles[stated.cycles["cell_id"] == "B"]
    assert (b["capacity_source"] == "coulomb_partial").all()
    with pytest.raises(MappingError, match="cut-off voltage must be a positive number"):
        load(cutoff_v=-1.0)


def test_one_spike_below_the_others_does_not_set_the_cutoff():
    ends = np.array([2.31, 2.71, 2.70, 3.40, 2.72])
    assert reaches_cutoff(ends, np.full(5, 4.1)).tolist() == [True, True, True, False, True]
    assert reaches_cutoff(np.array([3.4]), np.array([4.1])).tolist() == [True]


def test_score_basis_names_what_a_score_is_against():
    full, name = score_basis(np.array(["coulomb_full", "coulomb_partial", "coulomb_full"]))
    assert full.tolist() == [True, False, True] and name == "coulomb-counted, full discharges"
    assert score_basis(np.array(["file", "file"]))[1] == "file capacities"
    only, name = score_basis(np.array(["coulomb_partial", "coulomb_partial"]))
    assert only.all() and name == "coulomb-counted, partial"


class Oracle:
    """An estimator that knows every cycle's true SOH: any RMSE it gets comes from the labels."""

    def __init__(self, truth: dict[tuple[str, int], float]) -> None:
        self.truth = truth

    def predict(self, curves) -> np.ndarray:
        return np.array([self.truth[(str(c), int(k))] for c, k in zip(curves.cell_id, curves.cycle, strict=True)])


def test_estimate_soh_scores_against_full_discharges_only():
    data, truth = load()
    est = workflow.estimate_soh(workflow.from_upload(data).curves, Oracle(truth), "oracle")
    assert est.scored_against == "coulomb-counted, full discharges"
    assert est.scored.sum() == 16 and est.rmse < 0.5 and est.rmse_all < 0.5
    assert "capacity_source" in est.table().columns


def test_estimate_soh_names_a_score_on_partial_discharges_only():
    data, truth = load(partial_cells=("A", "B"), cutoff_v=2.7)
    est = workflow.estimate_soh(workflow.from_upload(data).curves, Oracle(truth), "oracle")
    assert est.scored_against == "coulomb-counted, partial" and est.scored.all()


def test_transfer_scores_full_discharges_only_and_trains_on_full_ones():
    data, truth = load()
    res = owncells.run(owncells.curves_of(data), ["A"], None)
    assert set(res.scores["scored_against"]) == {"coulomb-counted, full discharges"}
    assert set(res.scores["curves"]) == {8}  # B's full discharges; its 4 partial ones are estimated, not scored
    e = res.estimates
    assert len(e) == 12 and set(e["capacity_source"]) == {"coulomb_full", "coulomb_partial"}
    assert any("4 partial discharge(s) of the labelled cells left out" in w for w in res.warnings)
    # what the table calls B's capacities are its true ones (a full count), never a partial count
    full = (e["capacity_source"] == "coulomb_full").to_numpy()
    true = np.array([truth[("B", int(k))] for k in e["cycle"]])
    assert np.abs(e["soh_in_file"][full] - true[full]).max() < 0.01


def test_transfer_refuses_a_labelled_cell_with_partial_discharges_only():
    data, _ = load(partial_cells=("A",), cutoff_v=2.7)
    with pytest.raises(owncells.TransferError, match="partial discharges only"):
        owncells.run(owncells.curves_of(data), ["A"], None)
