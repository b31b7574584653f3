"""The materials page's "Verify with DFT": the selected candidates, checked by GPAW next to the potential."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from battgai.core import engine
from battgai.materials.dft.settings import PRESETS
from battgai.materials.dft.verify import verify_job
from components.run_job import heavy_step, saved_note

#: Candidates one click sends to DFT: each takes minutes, and so does each new reference phase.
MAX_DFT_CANDIDATES = 5
COLUMNS = ["formula", "verdict", "e_above_hull", "e_above_hull_dft", "formation_energy_dft", "decomposition",
           "run_type", "dft_seconds", "geometry", "note"]


def dft_panel(cands: list, rows: list[int], potential: str, pot_label: str, save) -> None:
    """Offer DFT for the selected table rows; ``save(run, dft_rows)`` stores the run's files and page state."""
    with st.container(border=True):
        st.markdown("**Verify with DFT** (GPAW, PBE, the Materials Project's spin, +U and MP2020 corrections)")
        chosen = [i for i in rows if cands[i].valid_structure][:MAX_DFT_CANDIDATES]
        f0, f1, f2 = st.columns([1, 1, 2])
        preset = f0.selectbox("Preset", list(PRESETS), key="mat_dft_preset",
                              help="screen: one DFT energy per structure (400 eV, k-density 3, up to "
                                   f"{PRESETS['screen'].max_atoms} atoms); accurate: 520 eV, k-density 4 and a DFT "
                                   f"relaxation (up to {PRESETS['accurate'].max_atoms} atoms).")
        as_given = f1.checkbox("As given", False, key="mat_dft_as_given",
                               help=f"Skip the {pot_label} relaxation: for structures DFT relaxed already (a CIF "
                                    "from a database).")
        f2.caption(f"Select up to {MAX_DFT_CANDIDATES} rows of the table. Each crystal is relaxed with {pot_label}, "
                   "then it and every known phase of its decomposition are computed with the same DFT settings "
                   "(reference phases once; later checks reuse them). A 4-atom cell takes about a minute on one "
                   "core, an 18-atom one about 12 minutes.")
        if st.button("Verify with DFT", disabled=not chosen, key="mat_dft_go"):
            structures = [cands[i].structure for i in chosen]
            settings = {"preset": PRESETS[preset].provenance(), "as_given": as_given, "potential": potential,
                        "candidates": [cands[i].formula for i in chosen]}
            with heavy_step("materials.dft", f"DFT ({preset}) of {', '.join(settings['candidates'])}",
                            settings) as run:
                bar = st.progress(0.0, text="DFT...")

                def progress(done: int, total: int, label: str) -> None:
                    bar.progress(done / max(total, 1), text=f"DFT {done}/{total} calculations: {label}")

                result = engine.run(verify_job, structures, preset, as_given=as_given, potential=potential,
                                    callbacks={"progress": progress})
                bar.empty()
                st.session_state["mat_dft"] = result
                save(run, result)
            saved_note(run)
        result = st.session_state.get("mat_dft")
        if result:
            table = pd.DataFrame(result)[COLUMNS].rename(columns={
                "e_above_hull": f"E_hull {pot_label}", "e_above_hull_dft": "E_hull DFT",
                "formation_energy_dft": "E_form DFT"})
            st.dataframe(table, width="stretch", hide_index=True)
            st.caption("E_hull DFT is measured against the phases named, recomputed with DFT: other phases could "
                       "only raise it, so 'refuted' (> 0.1 eV/atom) is definitive and 'confirmed' holds against "
                       "those phases. 'not comparable': +U and plain-GGA runs of one element would be mixed.")
