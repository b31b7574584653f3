"""Home: what battgai does, the three tasks, the compute device and which data was found."""

from pathlib import Path

import pandas as pd
import streamlit as st

from battgai.core import data
from battgai.core.demo import licoo2
from battgai.core.device import describe_device
from components.deep_link import through_app
from components.structure_viewer import show_structure

through_app()

ROOT = Path(__file__).resolve().parent.parent

st.title("battgai: generative AI for battery research")
st.markdown(
    "Generative models that work on **your** battery problems, in one browser tab, on your own machine: "
    "no data leaves it and nothing is downloaded at run time."
)

TASKS = [
    ("pages/materials.py", "Materials generation",
     "Propose new crystal structures (cathodes, anodes, solid electrolytes) under your constraints, then check "
     "validity, novelty, stability (CHGNet) and battery metrics, and explore them in 3D or as CIF."),
    ("pages/microstructure.py", "Microstructure",
     "Upload electrode CT / SEM images or stacks: denoise, super-resolve, segment phases, measure volume "
     "fraction, surface area and tortuosity, and generate synthetic 2D / 3D microstructures."),
    ("pages/health.py", "Battery health",
     "Generate realistic discharge curves at a chosen state of health, and measure whether the synthetic data "
     "makes a SOH estimator more accurate on cells it has never seen."),
]
cols = st.columns(3)
for col, (page, title, text) in zip(cols, TASKS, strict=True):
    with col, st.container(border=True):
        st.subheader(title)
        st.write(text)
        if (ROOT / page).exists():
            st.page_link(page, label=f"Open {title.lower()}", icon=":material/arrow_forward:")
        else:
            st.caption("Not available in this build yet.")

left, right = st.columns([3, 2])
with left:
    st.subheader("This machine")
    st.write(f"Models run on: **{describe_device()}** (set `BATTGAI_DEVICE` to override).")
    st.subheader("Data")
    st.write(f"`BATTGAI_DATA_DIR` = `{data.data_dir()}`")
    statuses = data.status()
    rows = [{"dataset": s.key, "what": s.description, "found": "yes" if s.found else "no"} for s in statuses]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if not any(s.found for s in statuses):
        st.warning("No shared data found: the materials page judges newness against the bundled index of known "
                   "phases and E_hull against the bundled MP-20 references; the other pages run on small demo data the "
                   "project makes itself. Get the "
                   "data with `python -m battgai data fetch` (see the README's Data section), or point "
                   "BATTGAI_DATA_DIR at the folder holding materials/, microstructure/ and cycling/.")
with right:
    st.subheader("Example: layered LiCoO2")
    show_structure(licoo2(), supercell=(2, 2, 1), height=380)
    st.caption("The classic layered cathode (R-3m); drag to rotate, scroll to zoom.")
