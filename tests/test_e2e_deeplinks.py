"""End to end: a page's address opened directly, in a fresh browser, lands on the app's page.

A colleague's shared link (``/materials``, ``/runs``, ...) must show the app's navigation (the titles and
icons app.py gives each page), the title and wide layout of app.py's ``st.set_page_config``; not Streamlit's
list of the script files next to the entry point ("app, campaigns, health, ...") with app.py never run.

Why it can go wrong: Streamlit treats a ``pages/`` folder next to the entry script as a legacy (MPA v1) app
until some session runs ``st.navigation``; until then a deep link runs ``pages/<name>.py`` alone. So the server
must be fresh and a deep link its first session: once "/" has been served (every test in test_e2e.py opens
"/" first) app.py has run and hides the difference. This module gets its own server (the module-scoped
fixtures of test_e2e.py) and never opens "/".
Screenshots go to artifacts/screenshots/deeplink_<page>.png.
"""

from __future__ import annotations

import ast

import pytest

from tests import test_e2e as e2e

ROOT = e2e.ROOT
# The browser and a server of this module's own (module-scoped), as test_e2e.py starts them.
browser = e2e.browser
server = e2e.server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(e2e.CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
]

VIEWPORT = {"width": 1600, "height": 1000}
#: Streamlit's centered layout caps the main block at 736 px; the wide one fills the 1600 px viewport.
WIDE_MIN_PX = 1100


def _app_py() -> tuple[list[tuple[str, str]], str, str]:
    """(file, title) of each page in app.py's PAGES whose file exists, and its set_page_config title and layout."""
    tree = ast.parse((ROOT / "app.py").read_text())
    pages = config = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PAGES" for t in node.targets):
            pages = ast.literal_eval(node.value)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "set_page_config":
            config = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg in ("page_title", "layout")}
    assert pages and config, "app.py no longer has a literal PAGES list and a set_page_config call"
    return [(f, t) for f, t, *_ in pages if (ROOT / f).exists()], config["page_title"], config["layout"]


PAGES, PAGE_TITLE, LAYOUT = _app_py()
TITLES = sorted(t for _, t in PAGES)
#: What Streamlit's own pages/ folder navigation would show: the entry script and page files by name.
RAW_NAMES = {"app"} | {f.rsplit("/", 1)[-1].removesuffix(".py") for f, _ in PAGES}
#: Every page but the default one (home, served at "/"), by the address st.Page gives it: the file's name.
ADDRESSES = [name for name in sorted(RAW_NAMES - {"app"}) if name != "home"]


def _wait_ran(page) -> None:
    """Until the first script run has finished (or failed): navigation drawn, script state notRunning."""
    page.locator('[data-testid="stSidebarNavLink"]').first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'"
        " && !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=120_000,
    )


@pytest.mark.parametrize("name", ADDRESSES)
def test_deep_link_lands_on_the_apps_page(server, browser, name):
    assert LAYOUT == "wide", "app.py no longer asks for the wide layout; update this test"
    context = browser.new_context(viewport=VIEWPORT)  # fresh: no cookies, storage or session of another test
    page = context.new_page()
    try:
        page.goto(f"{server}/{name}")
        _wait_ran(page)
        page.wait_for_timeout(500)  # let the navigation message settle
        links = page.locator('[data-testid="stSidebarNavLink"]')
        labels = sorted(links.nth(i).locator("span[label]").first.get_attribute("label") for i in range(links.count()))
        seen = {
            "url": page.url,
            "title": page.title(),
            "wide": "streamlit-wide" in (page.locator('[data-testid="stApp"]').get_attribute("class") or ""),
            "width": page.locator('[data-testid="stMainBlockContainer"]').bounding_box()["width"],
            "exceptions": page.locator('[data-testid="stException"]').all_inner_texts(),
        }
        e2e._screenshot(page, f"deeplink_{name}")  # before the asserts, so a failure leaves its picture

        assert labels == TITLES, f"/{name}: navigation shows {labels}, not app.py's page titles {TITLES}"
        assert not RAW_NAMES & set(labels), f"/{name}: navigation lists Streamlit's raw page file names: {labels}"
        assert seen["url"].rstrip("/") == f"{server}/{name}", f"/{name} moved to {seen['url']}"
        assert seen["title"] == PAGE_TITLE, f"/{name}: document title {seen['title']!r}, app.py sets {PAGE_TITLE!r}"
        assert seen["wide"], f"/{name}: the app is not in wide mode (set_page_config did not run)"
        assert seen["width"] >= WIDE_MIN_PX, f"/{name}: main block is {seen['width']:.0f} px wide at 1600 px"
        assert not seen["exceptions"], f"/{name}: {seen['exceptions'][0]}"
    finally:
        context.close()
