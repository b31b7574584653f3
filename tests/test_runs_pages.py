"""Every page saves its finished runs in the run store, and reopens them from a ``?run=`` link."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from battgai.runs import RunStore

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
