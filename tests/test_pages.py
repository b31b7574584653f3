"""Every page renders headless (streamlit AppTest) without an exception, with and without data."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_app_navigation_lists_every_page():
    src = (ROOT / "app.py").read_text()
    for page in PAGES:
        assert f'"{page}"' in src, f"{page} is not in app.py's navigation"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value.startswith("battgai")  # home is the default page


def run_page(page: str) -> AppTest:
    """Run ``page`` the way a user reaches it: through app.py's navigation (page links need it)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at.switch_page(page).run()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page):
    at = run_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, f"{page} has no title"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_shared_data(page, tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "nothing-here"))
    at = run_page(page)
    assert not at.exception, [e.value for e in at.exception]


def test_home_reports_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path))
    at = run_page("pages/home.py")
    assert any("No shared data found" in w.value for w in at.warning)


def test_models_page_lists_bundled_cards():
    from battgai.core import registry

    at = run_page("pages/models.py")
    cards = registry.list_cards()
    if cards:
        shown = at.dataframe[0].value["model"].tolist()
        assert shown == [c.name for c in cards]
    else:
        assert any("No bundled models" in i.value for i in at.info)
