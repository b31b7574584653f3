"""Every page saves its finished runs in the run store, and reopens them from a ``?run=`` link."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from battgai.core.runs import RunStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    return RunStore()


def page(name: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=180)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


@pytest.mark.usefixtures("no_shared_data")
def test_a_materials_generation_is_saved_and_reopens_after_the_session_is_gone(store):
    at = page("materials")
    at.slider[0].set_value(10)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    (rec,) = store.list("materials")
    assert rec.status == "finished" and rec.task == "materials.generate" and rec.model == "materials_gpt"
    n = len(at.dataframe[0].value)
    assert sum(f.endswith(".cif") for f in rec.files) == n and "checks.csv" in rec.files
    assert rec.provenance["settings"]["n"] == 10
    assert any(rec.id in c.value for c in at.caption)  # the page says where it was saved

    fresh = page("materials", run=rec.id)  # a new session: a refresh, another tab, after a restart
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert any(rec.id in i.value for i in fresh.info)
    assert fresh.dataframe[0].value.formula.tolist() == at.dataframe[0].value.formula.tolist()


def test_the_runs_page_lists_runs_and_says_when_one_was_cut_off(store):
    at = page("runs")
    assert not at.exception and any("No runs yet" in i.value for i in at.info)
    with store.start("health.generate", "done") as run:
        run.write("synthetic_curves.csv", b"a,b\n1,2\n")
    cut = store.start("microstructure.enhance", "cut off")
    meta = (cut.path / "run.json").read_text().replace('"pid": ', '"pid": 1', 1)  # an owner that is not alive
    (cut.path / "run.json").write_text(meta)
    at = page("runs")
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert dict(zip(table.title, table.status, strict=True)) == {"done": "finished", "cut off": "interrupted"}


@pytest.fixture
def demo_data(monkeypatch, tmp_path):
    import streamlit as st

    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.mark.usefixtures("demo_data")
def test_microstructure_runs_are_saved_and_reopen(store):
    at = page("microstructure")
    at.button(key="run_enhance").click().run()
    at.radio(key="task").set_value("Segment + measure").run()
    at.button(key="run_segment").click().run()
    assert not at.exception and not at.error
    enhanced, segmented = sorted(store.list("microstructure"), key=lambda r: r.task)
    assert (enhanced.task, segmented.task) == ("microstructure.enhance", "microstructure.segment")
    assert {r.status for r in (enhanced, segmented)} == {"finished"}
    assert "result.tif" in enhanced.files and "labels.tif" in segmented.files
    for rec, want in ((enhanced, at.session_state["enhance"]["result"].after),
                      (segmented, at.session_state["segment"]["result"][0].labels)):
        fresh = page("microstructure", run=rec.id)
        assert not fresh.exception, [e.value for e in fresh.exception]
        got = rec.state()["result"]
        assert (got.after if rec.task.endswith("enhance") else got[0].labels) == pytest.approx(want)
        assert fresh.dataframe and fresh.get("download_button")


@pytest.mark.usefixtures("demo_data")
def test_health_generation_and_experiment_are_saved_and_reopen(store):
    at = page("health")
    at.button(key="generate").click().run()
    at.radio(key="regime").set_value("first 30 % of each cell's life").run()
    at.button(key="experiment").click().run()
    assert not at.exception and not at.error
    by_task = {r.task: r for r in store.list("health")}
    assert set(by_task) == {"health.generate", "health.experiment"}
    assert by_task["health.generate"].read("synthetic_curves.csv") == at.session_state["health_generation"].csv()
    fresh = page("health", run=by_task["health.experiment"].id)
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert len(fresh.table) == 1
    fresh = page("health", run=by_task["health.generate"].id)
    assert not fresh.exception and fresh.get("download_button")


@pytest.mark.usefixtures("demo_data")
def test_a_one_second_health_generation_does_not_wait_behind_a_queued_job(store):
    import threading

    from battgai.core import jobs

    release, holding = threading.Event(), threading.Event()

    def long_job():
        with jobs.queue().slot("a long generation"):
            holding.set()
            release.wait(60)

    slots = [threading.Thread(target=long_job) for _ in range(jobs.queue().slots)]
    for t in slots:
        t.start()
    try:
        holding.wait(10)
        at = page("health")
        at.button(key="generate").click().run()
        assert not at.exception and not at.error
        assert [r.status for r in store.list("health")] == ["finished"]
    finally:
        release.set()
        for t in slots:
            t.join()


@pytest.mark.usefixtures("demo_data")
def test_a_link_to_a_run_that_did_not_finish_says_so_and_shows_a_fresh_page(store):
    cut = store.start("health.generate", "cut off")
    at = page("health", run=cut.id)
    assert not at.exception, [e.value for e in at.exception]
    assert any("only finished runs reopen" in w.value for w in at.warning)
    assert at.button(key="generate")  # the fresh page, not a reopened view
