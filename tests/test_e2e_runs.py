"""End to end: finished runs survive a server killed with ``kill -9`` and restarted; a run cut off shows as such.

A real server, a real browser: generate curves on the health page, start a materials generation and
``kill -9`` the server while it samples, start a new server on the same run store, and find both on
the Runs page (the finished one reopens in its page, the cut-off one reads "interrupted").
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from battgai.bench.load import serve
from battgai.core.runs import RunStore
from tests.test_e2e import CHROMIUM, ROOT, _click_and_wait, _open, _screenshot, _wait_idle, browser  # noqa: F401

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
]
LOG = ROOT / "artifacts" / "server_runs.log"


def _started_generation(browser, url: str, store: RunStore):  # noqa: F811
    """Press Generate on the materials page; return the page and its run once the store holds it."""
    page, _, _, _ = _open(browser, url, nav="materials")
    page.get_by_role("button", name="Generate", exact=True).click()
    deadline = time.time() + 120
    while not store.list("materials") and time.time() < deadline:
        time.sleep(0.2)
    (run,) = store.list("materials")
    assert run.status == "running"
    return page, run


def test_finished_runs_survive_kill_9_and_a_cut_off_one_reads_interrupted(browser, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    store = RunStore(home)
    with serve(home, LOG, startup_s=90) as (url, pid):
        page, _, _, _ = _open(browser, url, nav="health")
        _click_and_wait(page, page.get_by_role("button", name="Generate", exact=True))
        (done,) = store.list()
        assert done.status == "finished" and "synthetic_curves.csv" in done.files
        page.close()

        page, cut = _started_generation(browser, url, store)
        os.kill(pid, signal.SIGKILL)  # mid-sampling, no chance to clean up; leaving `serve` reaps it
        page.close()

    with serve(home, LOG, startup_s=90) as (url, _):
        assert {r.id: r.status for r in store.list()} == {done.id: "finished", cut.id: "interrupted"}
        assert store.get(done.id).read("synthetic_curves.csv") == done.read("synthetic_curves.csv")
        page, errors, _, _ = _open(browser, url, nav="runs")
        assert page.locator('[data-testid="stException"]').count() == 0 and not errors, errors
        assert page.get_by_text("its server process ended while it ran").count() > 0  # newest first: the cut one
        assert page.get_by_role("button", name="Open in its page").is_disabled()
        _screenshot(page, "runs_after_kill")
        page.close()
        # The finished run reopens in its page, from a link, in a fresh session.
        page, _, _, _ = _open(browser, f"{url}/health?run={done.id}")
        page.get_by_text(f"Reopened run {done.id}").first.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert json.loads((home / "runs" / done.id / "run.json").read_text())["status"] == "finished"
        page.close()


@pytest.mark.parametrize("how", ["close the tab", "press Stop"])
def test_a_generation_stops_when_its_tab_closes_or_stop_is_pressed(browser, tmp_path, how):  # noqa: F811
    home = tmp_path / "home"
    store = RunStore(home)
    with serve(home, LOG, startup_s=90) as (url, _):
        page, run = _started_generation(browser, url, store)
        t0 = time.time()
        if how == "close the tab":
            page.close()
        else:
            page.get_by_test_id("stButton").get_by_role("button", name="Stop", exact=True).click()
        while store.get(run.id).status == "running" and time.time() - t0 < 20:
            time.sleep(0.2)
        print(f"\n{how}: the run read {store.get(run.id).status!r} after {time.time() - t0:.1f} s")
        assert store.get(run.id).status == "stopped"
        if how == "press Stop":
            _wait_idle(page)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.close()
