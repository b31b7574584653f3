"""Each transfer run picks its pipeline on cells it holds out, never on the cells it scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgai.health import schema
from battgai.health.estimation import owncells
from battgai.health.estimation.pick import LABELLED_GROUP, pick
from tests.test_health_transfer import NOMINAL, other_lab_csv


def _lab(seed: int, soh=None) -> owncells.CurveSet:
    curves = owncells.curves_of(schema.read_upload(other_lab_csv(n_cells=4, n_cycles=30, seed=seed), None, NOMINAL,
                                                   f"lab{seed}.csv"))
    if soh is not None:
        curves.soh = soh(curves.soh)
    return curves


@pytest.fixture(scope="module")
def mine() -> owncells.CurveSet:
    return _lab(0)


def _inverted() -> owncells.CurveSet:
    """A source lab whose capacity falls as the window charge rises: it misleads any fit it joins."""
    return _lab(5, lambda s: 3.0 - 2 * s)


def test_the_labelled_cells_group_decides_when_there_is_one():
    errors = {"a": {LABELLED_GROUP: np.array([0.03, -0.03]), "g1": np.array([0.0, 0.0])},
              "b": {LABELLED_GROUP: np.array([0.01, 0.01]), "g1": np.array([0.5, 0.5])}}
    p = pick(errors, "a")
    assert p.pipeline == "b" and p.rmse == pytest.approx({"a": 3.0, "b": 1.0}) and p.curves == 2
    assert p.basis == "leave-one-labelled-cell-out" and "b 1.00; a 3.00" in p.reason()
    del errors["a"][LABELLED_GROUP], errors["b"][LABELLED_GROUP]
    p = pick(errors, "b")
    assert p.pipeline == "a" and p.basis == "leave-source-group-out (g1)"  # source groups when no labelled group


def test_nothing_held_out_keeps_the_default_and_says_so():
    p = pick({"a": {}, "b": {"g1": np.zeros(0)}}, "b")
    assert p.pipeline == "b" and p.rmse == {} and "unchecked" in p.reason()


def test_a_candidate_not_scored_on_every_held_out_curve_is_not_compared():
    p = pick({"source only": {"g1": np.array([np.nan, 0.0])}, "b": {"g1": np.array([0.2, 0.2])}}, "b")
    assert p.pipeline == "b" and set(p.rmse) == {"b"}
    with pytest.raises(ValueError, match="no candidate"):
        pick({"a": {"g1": np.array([np.nan])}}, "a")


def test_a_misleading_source_loses_on_the_held_out_labelled_cells_and_is_not_used(mine):
    res = owncells.run(mine, ["LFP1", "LFP2", "LFP3"], {"inverted": _inverted()})
    p = res.pick
    assert p.basis == "leave-one-labelled-cell-out" and p.curves == 90  # 3 cells x 30 cycles, each left out once
    assert p.rmse[owncells.TRANSFER] > 2 * p.rmse[p.pipeline]
    assert not p.pipeline.startswith(("transfer", "source")) and res.provenance.model == p.pipeline
    assert p.reason() in res.provenance.settings["pipeline_pick"]
    # the estimates are the picked pipeline's: their RMSE is its row of the scores
    e = res.estimates
    rmse = np.sqrt(np.mean((e["soh_estimate"] - e["soh_in_file"]) ** 2)) * 100
    assert rmse == pytest.approx(res.scores.set_index("pipeline").loc[p.pipeline, "rmse_soh_points"])
    assert (e["soh_high"] > e["soh_low"]).all() and not e["extrapolating"].all()


def test_with_one_labelled_cell_the_source_groups_decide(mine):
    labs = {"plain": _lab(3), "inverted": _inverted()}  # each misleads a transfer to the other
    res = owncells.run(mine, ["LFP1"], labs)
    assert res.pick.basis == "leave-source-group-out (inverted, plain)"
    assert not res.pick.pipeline.startswith("transfer")
    assert res.pick.rmse[owncells.TRANSFER] > res.pick.rmse[res.pick.pipeline]


@pytest.mark.parametrize("labelled", [["LFP1"], ["LFP1", "LFP2"]])
def test_the_scored_cells_labels_never_change_the_pick(mine, labelled):
    labs = {"plain": _lab(3), "inverted": _inverted()}
    a = owncells.run(mine, labelled, labs)
    other = mine.subset(np.arange(len(mine)))
    scored = ~np.isin(other.cell_id, labelled)
    other.soh = np.where(scored, other.soh * np.linspace(0.6, 1.1, len(other)), other.soh)
    b = owncells.run(other, labelled, labs)
    assert a.pick == b.pick
    pd.testing.assert_frame_equal(a.estimates.drop(columns="soh_in_file"), b.estimates.drop(columns="soh_in_file"))
    assert not a.scores.equals(b.scores)  # the labels did change: only the scores see them


def test_the_pick_reopens_from_the_run_store(tmp_path, monkeypatch, mine):
    from battgai.core.runs import RunStore

    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path))
    res = owncells.run(mine, ["LFP1", "LFP2"], None)
    with RunStore().start("health.transfer", "pick") as run:
        res.save(run)
    back = owncells.TransferResult.from_state(RunStore().list("health")[0].state())
    assert back.pick == res.pick and back.pick.rmse
