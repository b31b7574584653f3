"""The health page's transfer step under AppTest (demo cells, no shared data): estimates, download, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "health.py")


@pytest.fixture(autouse=True)
def _no_shared_data(tmp_path, monkeypatch):
    from battgai.core.data import DataNotFound
    from battgai.health import preprocess

    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))

    def absent(*_a, **_k):  # a NASA cache under runs/ from an earlier run would stand in for the data
        raise DataNotFound("absent in this test")

    monkeypatch.setattr(preprocess, "nasa_curves", absent)


def test_transfer_estimates_the_other_demo_cells():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="transfer").click().run()
    assert not at.exception and not at.error
    res = at.session_state["health_transfer"]
    assert set(res.estimates["cell_id"]) == {"DEMO2", "DEMO3", "DEMO4"}
    assert any("training on your labelled cells alone" in i.value for i in at.info)
    assert len(at.table) >= 1
    # one labelled cell and no source: nothing to hold out, and the page says the pipeline is unchecked
    assert at.success[0].value == res.pick.reason() and "unchecked" in res.pick.reason()


def test_transfer_without_a_labelled_cell_says_so():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.multiselect(key="labelled").set_value([]).run()
    at.button(key="transfer").click().run()
    assert not at.exception
    assert at.error and "Mark at least one cell" in at.error[0].value


def test_transfer_is_saved_in_the_run_store_and_reopens_after_the_session_is_gone(tmp_path, monkeypatch):
    import io

    import pandas as pd

    from battgai.core.runs import RunStore

    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.multiselect(key="labelled").set_value(["DEMO1", "DEMO2"]).run()
    at.button(key="transfer").click().run()
    assert not at.exception and not at.error
    res = at.session_state["health_transfer"]
    (rec,) = RunStore().list("health")
    assert rec.status == "finished" and rec.task == "health.transfer" and rec.page == "pages/health.py"
    assert rec.read("soh_estimates.csv") == res.csv() and rec.read("pipelines.csv") == res.scores_csv()
    prov = rec.provenance["settings"]
    assert prov["labelled_cells"] == ["DEMO1", "DEMO2"] and prov["window_fraction"] == [0.05, 0.4]
    assert "calibrated to hold 95%" in prov["band"] and prov["nominal_ah"] == rec.settings["nominal_ah"]
    assert rec.settings["labelled"] == "DEMO1, DEMO2"
    assert any(rec.id in c.value for c in at.caption)  # the page says where it was saved
    est = pd.read_csv(io.BytesIO(rec.read("soh_estimates.csv")))
    assert set(est["cell_id"]) == {"DEMO3", "DEMO4"} and (est["soh_high"] > est["soh_low"]).all()

    fresh = AppTest.from_file(PAGE, default_timeout=60)  # a new session: a refresh, another tab, after a restart
    fresh.query_params["run"] = rec.id
    fresh.run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert any(rec.id in i.value for i in fresh.info)
    assert any("Uncertainty:" in c.value for c in fresh.caption) and fresh.get("download_button")
    # the pick and the numbers it was made on: each labelled cell left out in turn
    assert fresh.success[0].value == res.pick.reason() and "leave-one-labelled-cell-out" in res.pick.reason()
    assert len(fresh.table) == 1  # the pipeline scores, unrounded from the stored columns


def test_a_mistake_in_the_labelled_cells_leaves_no_failed_run(tmp_path, monkeypatch):
    from battgai.core.runs import RunStore

    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.multiselect(key="labelled").set_value([]).run()
    at.button(key="transfer").click().run()
    assert at.error and RunStore().list() == []
