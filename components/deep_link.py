"""A page opened by its address on a server nobody has opened yet still gets the app's navigation and layout.

Streamlit sees the ``pages/`` folder next to ``app.py`` and, until some session has run ``app.py``'s
``st.navigation``, serves a page's address by running that page's file alone (its first multipage
mode, kept for apps that predate ``st.navigation``): no navigation, file names as titles, no
``set_page_config``. A link a colleague shares lands there when it is the server's first visit.
Every page calls :func:`through_app` first: in that mode it runs ``app.py`` instead, whose
``st.navigation`` ends the mode for the whole server and runs the same page inside the app, and
stops the bare run. Page tests (``AppTest.from_file("pages/x.py")``) are never in that mode.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parent.parent / "app.py"


def through_app() -> None:
    """Run the page inside ``app.py`` when Streamlit runs it bare from ``pages/`` (see the module docstring)."""
    # Streamlit's only record of the mode: None before the first session, True while the pages/ folder
    # decides, False once st.navigation has run (tests/test_e2e_deeplinks.py checks that this still holds).
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
