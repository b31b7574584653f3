"""The health page's transfer step under AppTest (demo cells, no shared data): estimates, download, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "health.py")


@pytest.fixture(autouse=True)
def _no_shared_data(tmp_path, monkeypatch):
    from battgai.data import DataNotFound
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


def test_transfer_without_a_labelled_cell_says_so():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.multiselect(key="labelled").set_value([]).run()
    at.button(key="transfer").click().run()
    assert not at.exception
    assert at.error and "Mark at least one cell" in at.error[0].value
