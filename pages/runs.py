"""Runs: every run of every page, from the run store; reopen one in its page or download it."""

import pandas as pd
import streamlit as st

from battgai.core import jobs
from components.deep_link import through_app
from components.run_job import store

through_app()

STATUS_HELP = {
    "finished": "finished; every file is saved",
    "running": "still running in this server",
    "stopped": "stopped before it finished (Stop pressed or tab closed); files written until then are kept",
    "failed": "ended with an error (see the error column)",
    "interrupted": "its server process ended while it ran (crash, restart or kill); files written until then "
                   "are kept",
}

st.title("Runs")
runs_store = store()
st.write("Every generation, energy run, enhancement, segmentation, generated volume, health experiment and SOH "
         f"transfer is saved when it finishes, with its provenance, under `{runs_store.root}` (set `BATTGAI_HOME` to "
         "move it). "
         "A refresh, a closed tab or a server restart loses nothing finished.")
queue = jobs.queue()
st.caption(f"Heavy steps on this server: {len(queue.running())} running, {len(queue.waiting())} waiting "
           f"(at most {queue.slots} at once; `BATTGAI_MAX_JOBS`).")

records = runs_store.list()
if not records:
    st.info("No runs yet: each page saves its runs here when they finish.")
    st.stop()

tasks = sorted({r.task for r in records})
picked_tasks = st.multiselect("Tasks", tasks, default=tasks, key="runs_tasks")
shown = [r for r in records if r.task in picked_tasks]
if not shown:
    st.warning("Pick at least one task.")
    st.stop()
table = pd.DataFrame([{
    "created (UTC)": r.created.replace("T", " ")[:19], "task": r.task, "title": r.title, "status": r.status,
    "model": r.model, "files": len(r.files),
    "settings": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.settings.items()),
    "error": r.error, "id": r.id} for r in shown])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "status": st.column_config.TextColumn("status", help="; ".join(f"{k}: {v}" for k, v in STATUS_HELP.items()))})

labels = {r.id: f"{r.created.replace('T', ' ')[:19]} · {r.task} · {r.title} ({r.status})" for r in shown}
chosen = st.selectbox("Run", list(labels), format_func=labels.__getitem__, key="runs_chosen")
record = next(r for r in shown if r.id == chosen)
st.caption(STATUS_HELP.get(record.status, record.status))
c1, c2, c3 = st.columns(3)
if record.page and c1.button("Open in its page", type="primary", key="runs_open",
                             disabled=record.status != "finished",
                             help="Only finished runs reopen; the files of the others download."):
    st.switch_page(record.page, query_params={"run": record.id})
# The zip is built when the button is pressed, not on every rerun of the page (a run can hold hundreds of CIFs).
c2.download_button(f"Download ({len(record.files)} files + provenance, zip)", record.zip,
                   file_name=f"battgai_{record.id}.zip", mime="application/zip", key="runs_download")
if c3.button("Delete this run", key="runs_delete", disabled=record.status == "running"):
    runs_store.delete(record.id)
    st.rerun()
with st.expander("Provenance and settings"):
    st.json({"settings": record.settings, "provenance": record.provenance, "files": list(record.files),
             "folder": str(record.path)})
