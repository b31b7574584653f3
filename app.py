"""battgai: Streamlit entry point. Page setup and navigation only."""

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).parent
# A local favicon: material-icon and emoji favicons are fetched from Google / CDN hosts.
st.set_page_config(page_title="battgai", page_icon=str(ROOT / "static" / "favicon.png"), layout="wide")

# (file, title, icon); a task page appears once its file exists, so nothing here is a placeholder.
PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/materials.py", "Materials generation", ":material/diamond:"),
    ("pages/campaigns.py", "Discovery campaigns", ":material/travel_explore:"),
    ("pages/microstructure.py", "Microstructure", ":material/grain:"),
    ("pages/health.py", "Battery health", ":material/battery_charging_full:"),
    ("pages/models.py", "Model zoo", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/history:"),
]
st.navigation(
    [st.Page(f, title=t, icon=i, default=(f == "pages/home.py")) for f, t, i in PAGES if (ROOT / f).exists()]
).run()
