"""Heavy steps in a page: wait for a place in the job queue, offer Stop, save the run in the store.

A page wraps its heavy step as::

    with heavy_step("microstructure.enhance", "Denoise of x.tif", settings) as run:
        result = engine.run(pipeline.enhance, image, task, callbacks={"progress": cb})  # in a worker process
        run.write("result.tif", ...); run.set(provenance=prov); run.save_state(...)
    saved_note(run)

Pressing Stop (or any widget) makes Streamlit rerun the script, which stops the running one at its
next page call (the next progress callback of the job, which :func:`battgai.core.engine.run` then
cancels, killing its worker); so does closing the tab. The run is then recorded as stopped, and a
waiting one leaves the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import streamlit as st

from battgai.core import jobs
from battgai.core.runs import Run, RunNotFound, RunRecord, RunStore


def store() -> RunStore:
    return RunStore()


@contextlib.contextmanager
def heavy_step(task: str, title: str, settings: dict[str, Any] | None = None, queued: bool = True) -> Iterator[Run]:
    """Queue, then run the ``with`` block as a stored run; see the module docstring.

    ``queued=False`` is for steps bounded to about a second: queueing them behind minutes-long
    generations made a one-second step wait minutes (measured with the load bench).
    """
    if not queued:
        with store().start(task, title, settings) as run:
            yield run
        return
    note = st.empty()
    note.button("Stop", key=f"stop_{task}", help="Stops this step; nothing of it is kept.")
    place = st.empty()

    def waiting(ahead: int, busy: int) -> None:
        place.info(f"Waiting for a free worker: {ahead - 1} job(s) queued before yours, {busy} running "
                   f"(at most {jobs.queue().slots} at once on this server). It starts by itself.")

    try:
        with jobs.queue().slot(title, on_wait=waiting):
            place.empty()
            with store().start(task, title, settings) as run:
                yield run
    finally:
        note.empty()
        place.empty()


def saved_note(run: Run) -> None:
    st.caption(f"Saved as run `{run.id}`: it stays on the Runs page after a refresh or a restart.")


def reopened(task_prefix: str) -> RunRecord | None:
    """The run named by the page's ``?run=`` link, when it belongs to this page's tasks."""
    run_id = st.query_params.get("run")
    if not run_id:
        return None
    try:
        record = store().get(run_id)
    except RunNotFound:
        st.error("That run is not in the run store any more (deleted, or BATTGAI_HOME changed).")
        return None
    if not record.task.startswith(task_prefix):
        return None
    if record.status != "finished":  # its page state may be missing or half written
        st.warning(f"Run `{record.id}` is {record.status}: only finished runs reopen in their page; the files it "
                   "wrote download from the Runs page.")
        return None
    return record


def reopened_banner(record: RunRecord) -> None:
    """Say which stored run the page shows, and offer the way back to a fresh page."""
    c1, c2 = st.columns([4, 1])
    c1.info(f"Reopened run `{record.id}` ({record.status}, {record.created}): {record.title}")
    if c2.button("New run", key="leave_reopened"):
        del st.query_params["run"]
        st.rerun()
