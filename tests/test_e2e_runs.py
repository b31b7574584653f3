"""End to end: finished runs survive a server killed with ``kill -9`` and restarted; a run cut off shows as such.

A real server, a real browser: generate curves on the health page, start a materials generation and
``kill -9`` the server while it samples, start a new server on the same run store, and find both on
the Runs page (the finished one reopens in its page, the cut-off one reads "interrupted").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from battgai.runs import RunStore
from tests.test_e2e import CHROMIUM, ROOT, _click_and_wait, _free_port, _open, _screenshot, _wait_idle, browser  # noqa: F401

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
]


def _start(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "BATTGAI_HOME": str(home), "HF_HUB_OFFLINE": "1", "BATTGAI_DEVICE": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"streamlit server did not become healthy in 90 s; see {log}")


def test_finished_runs_survive_kill_9_and_a_cut_off_one_reads_interrupted(browser, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    log = ROOT / "artifacts" / "server_runs.log"
    log.parent.mkdir(exist_ok=True)
    proc, url = _start(home, log)
    store = RunStore(home)
    try:
        page, _, _, _ = _open(browser, url, nav="health")
        _click_and_wait(page, page.get_by_role("button", name="Generate", exact=True))
        (done,) = store.list()
        assert done.status == "finished" and "synthetic_curves.csv" in done.files
        page.close()

        page, _, _, _ = _open(browser, url, nav="materials")
        page.get_by_role("button", name="Generate", exact=True).click()
        deadline = time.time() + 120
        while len(store.list("materials")) == 0 and time.time() < deadline:
            time.sleep(0.2)
        (cut,) = store.list("materials")
        assert cut.status == "running"
        os.kill(proc.pid, signal.SIGKILL)  # mid-sampling, no chance to clean up
        proc.wait(timeout=20)
        page.close()
    finally:
        if proc.poll() is None:
            proc.kill()

    proc, url = _start(home, log)
    try:
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("how", ["close the tab", "press Stop"])
def test_a_generation_stops_when_its_tab_closes_or_stop_is_pressed(browser, tmp_path, how):  # noqa: F811
    home = tmp_path / "home"
    log = ROOT / "artifacts" / "server_runs.log"
    proc, url = _start(home, log)
    store = RunStore(home)
    try:
        page, _, _, _ = _open(browser, url, nav="materials")
        page.get_by_role("button", name="Generate", exact=True).click()
        deadline = time.time() + 120
        while not store.list("materials") and time.time() < deadline:
            time.sleep(0.2)
        (run,) = store.list("materials")
        assert run.status == "running"
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)
