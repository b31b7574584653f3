"""The engine runs a page's heavy step in a Ray worker process: results, progress, errors and Stop come back."""

from __future__ import annotations

import os
import time

import pytest

from battgai.core import engine


def count_to(n: int, *, progress=None, delay: float = 0.0) -> dict:
    """A stand-in for a backend function: reports progress, returns where it ran and what it was told."""
    for i in range(n):
        time.sleep(delay)
        if progress is not None:
            progress(i + 1, n)
    return {"pid": os.getpid(), "home": os.environ.get("BATTGAI_HOME"), "n": n}


def refuse(text: str, *, progress=None) -> None:
    if progress is not None:
        progress(0, 1)
    raise ValueError(f"cannot use {text}")


class Unpicklable(Exception):
    def __init__(self, handle):
        super().__init__("held a lock")
        self.handle = handle


def raise_unpicklable() -> None:
    import threading

    raise Unpicklable(threading.Lock())


def test_inline_mode_calls_the_function_here(monkeypatch):
    monkeypatch.setenv(engine.MODE_ENV, "inline")
    seen = []
    out = engine.run(count_to, 3, callbacks={"progress": lambda i, n: seen.append((i, n))})
    assert out["pid"] == os.getpid() and seen == [(1, 3), (2, 3), (3, 3)]


def test_a_mode_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setenv(engine.MODE_ENV, "threads")
    with pytest.raises(engine.EngineError, match="BATTGAI_ENGINE must be one of"):
        engine.run(count_to, 1)


@pytest.fixture(scope="module")
def on_ray():
    import ray

    started = not ray.is_initialized()
    engine.ensure_connected()
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def ray_mode(monkeypatch, on_ray):
    monkeypatch.setenv(engine.MODE_ENV, "ray")


def test_a_job_runs_in_a_worker_process_and_its_progress_comes_back(ray_mode, monkeypatch, tmp_path):
    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path))
    seen = []
    out = engine.run(count_to, 20, callbacks={"progress": lambda i, n: seen.append((i, n))})
    assert out["pid"] != os.getpid()
    assert out["home"] == str(tmp_path)  # the worker reads the run store the page reads
    assert out["n"] == 20
    # Calls that pile up are merged, but the last one always arrives, in order.
    assert seen[-1] == (20, 20) and seen == sorted(seen) and len(seen) >= 1


def test_an_error_in_the_worker_is_raised_here_as_itself(ray_mode):
    with pytest.raises(ValueError, match=r"^cannot use x\.tif$"):
        engine.run(refuse, "x.tif", callbacks={"progress": lambda *a: None})
    with pytest.raises(RuntimeError, match="Unpicklable: held a lock"):
        engine.run(raise_unpicklable)


def report_pid_then_sleep(*, progress) -> None:
    progress(os.getpid())
    time.sleep(60)


def test_a_callback_that_raises_stops_the_job_and_kills_its_worker(ray_mode):
    import psutil

    class Stop(Exception):  # what Streamlit raises in a page call when the user presses Stop
        pass

    pids = []

    def stop(pid: int) -> None:
        pids.append(pid)
        raise Stop

    t0 = time.time()
    with pytest.raises(Stop):
        engine.run(report_pid_then_sleep, callbacks={"progress": stop})
    deadline = time.time() + 20
    while psutil.pid_exists(pids[0]) and time.time() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(pids[0]) and time.time() - t0 < 30  # killed, not left to sleep its 60 s
    assert engine.run(count_to, 1)["n"] == 1  # the engine takes the next job


def test_ray_outlives_the_thread_of_the_first_job(tmp_path):
    """A session's thread starts Ray and ends (the tab closes); the next session's job still runs."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = (
        "import threading, time\n"
        "from battgai.core import engine\n"
        "from tests.test_engine import count_to\n"
        "t = threading.Thread(target=lambda: engine.run(count_to, 1)); t.start(); t.join()\n"
        "time.sleep(3)\n"
        "print(engine.run(count_to, 2)['n'])\n"
    )
    env = {**os.environ, engine.MODE_ENV: "ray", "RAY_ADDRESS": ""}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0 and out.stdout.strip().endswith("2"), out.stderr[-2000:]
