"""``python -m battgai.bench load --sessions N``: many researchers at once, in real browsers, on one server.

Why a browser and not threads calling the backend: what breaks under load is the app's, not the science's: the
job queue, per-session state, the run store, a page that must still render while heavy jobs run. So the bench
starts one ``streamlit run app.py`` (fresh ``BATTGAI_HOME``, CPU, offline), opens N browser contexts in one
headless Chromium (each context is its own Streamlit session), deals them round-robin to each page's main action
and presses every button at the same moment:

- materials "Generate" (the default form; each session requires its own element),
- microstructure "Denoise" (each session uploads the bundled raw X-ray slice cut to its own width),
- health "Generate" (each session asks for its own target SOH values).

The marker makes leakage checkable: a session leaks when what its page offers for download, or the run its page
says it saved, holds anything but its own marker. Meanwhile a fresh page of the home page is opened every
``probe_every`` seconds and timed until it is idle, and the server's memory and the machine's load are sampled
every second (the bench's own browser and anything else on the machine share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from battgai.core.registry import REPO_ROOT

PAGES = ("materials", "microstructure", "health")
#: Required element of the k-th materials session: common ones, each in many training crystals.
ELEMENTS = ("Li", "Na", "Mg", "Ti", "Cu", "Fe", "Mn", "Co", "Ni", "Zn",
            "K", "Ca", "V", "Cr", "Al", "Sr", "Ba", "Zr", "Sn", "Ga")
#: What the finished step leaves on each page, besides the "Saved as run" caption.
DONE = {
    "materials": ('[data-testid="stDataFrame"]',),
    "microstructure": ('[data-testid="stDataFrame"]', '[data-testid="stPlotlyChart"] .main-svg'),
    "health": ('[data-testid="stDownloadButton"]',),
}
RUN_TASK = {"materials": "materials.generate", "microstructure": "microstructure.enhance",
            "health": "health.generate"}
DOWNLOAD = {"materials": "all valid candidates", "microstructure": "Download result",
            "health": "Download synthetic curves"}
VIEWPORT = {"width": 1400, "height": 1000}
TARGETS = ("20 sessions: all finish, no exception, no leakage; idle page render p95 <= 5 s and max <= 8 s; "
           "server and worker memory reported")

# One evaluation per poll: reading the page costs the browser little, and the page's own text is the truth.
POLL_JS = """(done) => {
  const all = s => [...document.querySelectorAll(s)];
  const text = s => all(s).map(e => e.textContent).join('\\n');
  const saved = text('[data-testid="stCaptionContainer"]').match(/Saved as run (\\S+?):/);
  return {running: all('[data-testid="stStatusWidget"]').length > 0,
          waiting: text('[data-testid="stAlert"]').includes('Waiting for a free worker'),
          exceptions: all('[data-testid="stException"]').length,
          errors: text('[data-testid="stAlertContentError"]'),
          run: saved ? saved[1] : '',
          done: done.every(s => all(s).length > 0)};
}"""
IDLE_JS = "() => !!document.querySelector('h1') && !document.querySelector('[data-testid=\"stStatusWidget\"]')"


@dataclasses.dataclass
class Session:
    """One browser session: its page, its marker, and what happened to it."""

    index: int
    page: str
    marker: str
    finished: bool = False
    exceptions: int = 0
    leaked: bool = False
    run_id: str = ""
    queued_s: float = 0.0
    total_s: float = float("nan")
    timed_out: bool = False
    note: str = ""


@dataclasses.dataclass
class LoadResult:
    """A whole load run: its sessions, the server's memory and the idle page's render times."""

    sessions: list[Session]
    candidates: int
    slots: int
    timeout_s: float
    rss_before_mb: float
    server_peak_mb: float
    workers_peak_mb: float
    idle_render_s: list[float]
    load_mean: float
    date: str

    @property
    def finished(self) -> int:
        return sum(s.finished for s in self.sessions)

    @property
    def exceptions(self) -> int:
        return sum(s.exceptions for s in self.sessions)

    @property
    def leakage(self) -> int:
        return sum(s.leaked for s in self.sessions)


# --- the server ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(home: Path, log: Path, startup_s: float = 180) -> Iterator[tuple[str, int]]:
    """Run ``streamlit run app.py`` on a free port with ``BATTGAI_HOME=home``; yield its URL and pid."""
    port = _free_port()
    env = {**os.environ, "BATTGAI_HOME": str(home), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "BATTGAI_DEVICE": "cpu", "BATTGAI_ENGINE": "ray"}  # the app as shipped, whatever the caller runs on
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + startup_s
            while True:
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                        break
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the streamlit server did not become healthy in {startup_s:g} s; see {log}")
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Sampler:
    """Peak resident memory of a process and, apart, of its children, and the machine's mean 1-minute load average,
    sampled every ``every`` seconds in a thread.

    The server is one process; its children are the engine's (Ray's own services and its worker processes, which
    run the heavy steps). RSS summed over processes counts shared pages twice.
    """

    def __init__(self, pid: int, every: float = 1.0):
        import psutil

        self._proc = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self.server_peak_mb = 0.0
        self.workers_peak_mb = 0.0
        self._loads: list[float] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now_mb(self) -> tuple[float, float]:
        """RSS of the server and the sum over its children, in MB."""
        import psutil

        server, children = 0, 0
        with contextlib.suppress(psutil.Error):
            server = self._proc.memory_info().rss
            for p in self._proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    children += p.memory_info().rss
        return server / 2**20, children / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            server, workers = self.now_mb()
            self.server_peak_mb = max(self.server_peak_mb, server)
            self.workers_peak_mb = max(self.workers_peak_mb, workers)
            self._loads.append(os.getloadavg()[0])
            self._stop.wait(self._every)

    @property
    def load_mean(self) -> float:
        return statistics.fmean(self._loads) if self._loads else float("nan")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- what each session does -----------------------------------------------------------------------------------


def plan(n: int, elements: Sequence[str] = ELEMENTS) -> list[Session]:
    """``n`` sessions dealt round-robin to the pages, each with its own marker."""
    if n < 1:
        raise ValueError(f"sessions must be at least 1, got {n}")
    if (n + 2) // 3 > len(elements):
        raise ValueError(f"{n} sessions need {(n + 2) // 3} distinct required elements, got {len(elements)}")
    sessions = []
    for i in range(n):
        page, k = PAGES[i % 3], i // 3
        marker = {"materials": elements[k], "microstructure": f"load_{i:02d}.png",
                  "health": ", ".join(f"{t - 0.005 * k:.3f}" for t in (0.95, 0.85, 0.75))}[page]
        sessions.append(Session(i, page, marker))
    return sessions


def upload_image(k: int) -> np.ndarray:
    """The k-th microstructure session's input: the bundled raw slice (or the demo image) 8 k columns narrower."""
    from battgai.core.data import DataNotFound
    from battgai.microstructure import io as msio

    try:
        image = msio.load_sample(next(n for n, s in msio.SAMPLES.items() if s.kind == "grey"))
    except DataNotFound:
        image = (msio.demo_image((256, 512)) * 255).astype(np.uint8)
    return image[:, : image.shape[1] - 8 * k]


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


async def _settle(page) -> None:
    """Wait for the rerun a click or an Enter started, then for the script to finish."""
    await page.wait_for_timeout(800)
    await page.wait_for_function(IDLE_JS, timeout=300_000)


async def _prepare(page, session: Session, candidates: int) -> None:
    """Put the session's marker in, up to the button that starts the heavy step."""
    if session.page == "materials":
        await page.get_by_label("Required elements").fill(session.marker)  # inside a form: no rerun yet
        thumb = page.locator('input[type="range"][aria-label="Candidates to sample"]')
        value = int(await thumb.input_value())
        for _ in range(abs(value - candidates) // 10):
            await thumb.press("ArrowLeft" if candidates < value else "ArrowRight")
        if int(await thumb.input_value()) != candidates:
            raise ValueError(f"could not set the candidate slider to {candidates} (steps of 10 from 10 to 500)")
    elif session.page == "microstructure":
        await page.locator('[data-testid="stRadio"]').filter(has_text="Input").get_by_text(
            "Upload", exact=True).click()
        await _settle(page)
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(files=[{
            "name": session.marker, "mimeType": "image/png",
            "buffer": _png(upload_image(session.index // 3))}])
        await _settle(page)
    else:
        box = page.get_by_label("Target SOH values")
        await box.fill(session.marker)
        await box.press("Enter")
        await _settle(page)
    await page.get_by_role("button", name=_button(session), exact=True).wait_for(timeout=120_000)


def _button(session: Session) -> str:
    return "Run" if session.page == "microstructure" else "Generate"


async def _wait_done(page, session: Session, timeout_s: float) -> dict:
    """Poll the page each second until its step ended; count the time it showed the queue's waiting note."""
    t0 = last = time.perf_counter()
    while True:
        state = await page.evaluate(POLL_JS, list(DONE[session.page]))
        now = time.perf_counter()
        if state["waiting"]:
            session.queued_s += now - last
        last = now
        session.total_s = now - t0
        ended = state["exceptions"] or state["errors"] or (state["run"] and state["done"])
        if ended and not state["running"]:
            return state
        if now - t0 > timeout_s:
            session.timed_out = True
            raise TimeoutError(f"not finished after {timeout_s:g} s")
        await asyncio.sleep(1.0)


async def _download(page, session: Session) -> bytes:
    button = page.locator('[data-testid="stDownloadButton"]').filter(has_text=DOWNLOAD[session.page])
    async with page.expect_download(timeout=120_000) as info:
        await button.first.click()
    return Path(await (await info.value).path()).read_bytes()


def _problems(session: Session, page_zip: bytes, record, candidates: int) -> list[str]:
    """Everything in the page's download or in its stored run that is not this session's own work."""
    import pandas as pd

    zf = zipfile.ZipFile(io.BytesIO(page_zip))
    problems = []
    if session.page == "materials":
        from pymatgen.core import Composition

        el = session.marker
        shown = pd.read_csv(io.BytesIO(zf.read("checks.csv")))
        stored = pd.read_csv(io.BytesIO(record.read("checks.csv")))
        for where, table in (("download", shown), ("run", stored)):
            foreign = [f for f in table.formula if el not in Composition(f)]
            if foreign:
                problems.append(f"{len(foreign)} crystals of the {where} lack {el}: {', '.join(foreign[:3])}")
        if not set(shown.formula) <= set(stored.formula):
            problems.append("the download holds crystals its run does not")
        session.note = f"{len(stored)} of {candidates} candidates"
    elif session.page == "microstructure":
        import tifffile

        asked = upload_image(session.index // 3).shape
        for where, data in (("download", zf.read("result.tif")), ("run", record.read("result.tif"))):
            if (shape := tifffile.imread(io.BytesIO(data)).shape) != asked:
                problems.append(f"the {where}'s result is {shape}, the upload was {asked}")
        for where, text in (("download", zf.read("provenance.json").decode()), ("run", record.title)):
            if session.marker not in text:
                problems.append(f"the {where} does not name the upload {session.marker}")
    else:
        key = "conditions (SOH, T C, |I| A)"
        want = {round(float(t), 3) for t in session.marker.split(",")}
        provs = (("download", json.loads(zf.read("provenance.json"))), ("run", record.provenance or {}))
        for where, prov in provs:
            got = {round(c[0], 3) for c in prov.get("settings", {}).get(key, [])}
            if got != want:
                problems.append(f"the {where} holds SOH {sorted(got)}, asked {sorted(want)}")
        curves = pd.read_csv(io.BytesIO(zf.read("synthetic_curves.csv")))
        soh = set((curves.capacity_ah / provs[0][1]["settings"]["nominal_ah"]).round(3))
        if not soh <= want:
            problems.append(f"the downloaded curves have SOH {sorted(soh - want)} not asked for")
    return problems


async def _session(browser, url: str, session: Session, home: Path, candidates: int, timeout_s: float,
                   ready, go: asyncio.Event) -> None:
    from battgai.core.runs import RunNotFound, RunStore

    context = page = None
    try:
        try:
            context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            # Playwright's 30 s default is too short here: with 20 sessions opening at once, a page can take
            # longer than that to show its first widget (seen on the health page, which loads its curves first).
            context.set_default_timeout(300_000)
            page = await context.new_page()
            await page.goto(f"{url}/{session.page}")
            await page.wait_for_function(IDLE_JS, timeout=300_000)
            await _prepare(page, session, candidates)
        finally:
            ready()
        await go.wait()
        await page.get_by_role("button", name=_button(session), exact=True).click()
        state = await _wait_done(page, session, timeout_s)
        session.run_id = state["run"]
        if state["exceptions"] or state["errors"] or not state["run"]:
            session.note = state["errors"][:200] or "the page shows an exception"
            return
        try:
            record = RunStore(home).get(session.run_id)
        except RunNotFound:
            session.note = f"run {session.run_id} is not in the run store"
            return
        if record.status != "finished" or record.task != RUN_TASK[session.page]:
            session.note = f"run {record.id} is {record.task}, {record.status}"
            return
        problems = _problems(session, await _download(page, session), record, candidates)
        session.finished = True
        session.leaked = bool(problems)
        if problems:
            session.note = "; ".join(problems)
    except Exception as exc:  # a session that fails is counted and described, and the others go on
        session.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        if context is not None:
            with contextlib.suppress(Exception):
                session.exceptions = await page.locator('[data-testid="stException"]').count()
            await context.close()


async def _probe(browser, url: str, timeout_s: float = 120) -> float:
    """Seconds for a fresh session's home page to be idle (title shown, script finished)."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(timeout_s * 1000)
    try:
        page = await context.new_page()
        t0 = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)
        return time.perf_counter() - t0
    except Exception:  # a probe that never renders counts as its timeout, so the max says so
        return timeout_s
    finally:
        await context.close()


async def _drive(url: str, sessions: list[Session], home: Path, candidates: int, timeout_s: float,
                 probe_every: float, memory: Sampler) -> tuple[list[float], float]:
    """Run the sessions; return the idle page's render times and the server's RSS before them (MB)."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("the load bench drives Debian's chromium, which is not installed (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"])
        await _probe(browser, url)  # the first page imports the app: a user after a restart, not under load
        before = memory.now_mb()[0]
        remaining = len(sessions)
        go = asyncio.Event()

        def ready() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                go.set()

        work = asyncio.gather(*(_session(browser, url, s, home, candidates, timeout_s, ready, go)
                                for s in sessions))
        await go.wait()
        renders = []
        while not work.done():
            t0 = time.perf_counter()
            renders.append(await _probe(browser, url))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(work), max(0.0, probe_every - (time.perf_counter() - t0)))
        await work
        await browser.close()
    return renders, before


def run_load(n: int, candidates: int = 50, elements: Sequence[str] = ELEMENTS, timeout_s: float = 1200,
             probe_every: float = 10, home: Path | None = None, log: Path | None = None) -> LoadResult:
    """Run ``n`` sessions at once against a fresh server and measure them (see the module docstring).

    Parameters
    ----------
    n : int
        Browser sessions, dealt round-robin to materials, microstructure and health.
    candidates : int
        Candidates each materials session asks for (10 to 500 in steps of 10, the page's slider).
    elements : sequence of str
        The required element of each materials session, in order; one per materials session.
    timeout_s : float
        Longest a session may take from its button to its result, queueing included.
    probe_every : float
        Seconds between the starts of two idle-page probes.
    home : Path, optional
        The server's ``BATTGAI_HOME``, kept afterwards; default a temporary folder, removed afterwards.
    log : Path, optional
        Where the server's output goes (default ``artifacts/load_server.log``).
    """
    from battgai.core import jobs

    if not 10 <= candidates <= 500 or candidates % 10:
        raise ValueError(f"candidates must be 10 to 500 in steps of 10 (the page's slider), got {candidates}")
    sessions = plan(n, elements)
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="battgai-load-")))
        url, pid = stack.enter_context(serve(home, log or REPO_ROOT / "artifacts" / "load_server.log"))
        memory = stack.enter_context(Sampler(pid))
        renders, before = asyncio.run(_drive(url, sessions, home, candidates, timeout_s, probe_every, memory))
    return LoadResult(sessions, candidates, jobs.default_slots(), timeout_s, before, memory.server_peak_mb,
                      memory.workers_peak_mb, renders, memory.load_mean, dt.date.today().isoformat())


# --- the table ------------------------------------------------------------------------------------------------

HEADER = ("| sessions (materials / microstructure / health) | candidates | job slots | finished | exceptions | leakage "
          "| server RSS before / peak (MB) | engine RSS peak (MB) | idle page render median / p95 / max (s, probes) "
          "| wall materials median / max (s) | wall microstructure | wall health | queued median / max (s) "
          "| machine load (mean 1-min load avg) | date |\n" + "|---" * 15 + "|")


def p95(values: list[float]) -> float:
    """The 95th percentile, linearly interpolated (numpy's default), of at least one value."""
    return float(np.percentile(values, 95))


def _median_max(values: list[float]) -> str:
    values = [v for v in values if v == v]
    return f"{statistics.median(values):.0f} / {max(values):.0f}" if values else "–"


def _wall(sessions: list[Session], timeout_s: float) -> str:
    """Median / max wall time of the finished sessions, and how many ran out of time."""
    text = _median_max([s.total_s for s in sessions if s.finished])
    late = sum(s.timed_out for s in sessions)
    return text + (f" ({late} out of time at {timeout_s:.0f} s)" if late else "")


def row(result: LoadResult) -> str:
    """One markdown table row for a load run."""
    by_page = {p: [s for s in result.sessions if s.page == p] for p in PAGES}
    counts = " / ".join(str(len(v)) for v in by_page.values())
    renders = result.idle_render_s
    render = (f"{statistics.median(renders):.1f} / {p95(renders):.1f} / {max(renders):.1f} ({len(renders)})"
              if renders else "–")
    cells = [f"{len(result.sessions)} ({counts})", str(result.candidates), str(result.slots),
             f"{result.finished} of {len(result.sessions)} in {result.timeout_s:.0f} s", str(result.exceptions),
             str(result.leakage),
             f"{result.rss_before_mb:,.0f} / {result.server_peak_mb:,.0f}", f"{result.workers_peak_mb:,.0f}", render,
             *(_wall(by_page[p], result.timeout_s) for p in PAGES),
             _median_max([s.queued_s for s in result.sessions]), f"{result.load_mean:.1f}", result.date]
    return "| " + " | ".join(cells) + " |"


def details(result: LoadResult) -> str:
    """One line per session, for the terminal: what it asked for, how long it took, what went wrong."""
    lines = ["| # | page | marker | finished | leaked | exceptions | queued (s) | wall (s) | run | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s.index} | {s.page} | {s.marker} | {s.finished} | {s.leaked} | {s.exceptions} | {s.queued_s:.0f} "
              f"| {s.total_s:.0f} | {s.run_id} | {s.note} |" for s in result.sessions]
    lines.append("\nIdle page renders in order (s): " + " ".join(f"{r:.1f}" for r in result.idle_render_s))
    return "\n".join(lines)


def section(result: LoadResult, kept_rows: list[str]) -> str:
    """The BENCHMARKS.md section: this run's row replaces the row of the same session count."""
    rows = {int(r.split("|")[1].split()[0]): r for r in kept_rows}
    rows[len(result.sessions)] = row(result)
    return "\n".join([
        "Command: `python -m battgai.bench load --sessions N` (one row per N; a run replaces its N's row). "
        "Real browsers: one headless Debian Chromium (Playwright), one context per session, against one "
        "`streamlit run app.py` the bench starts (fresh `BATTGAI_HOME`, CPU, offline). Sessions are dealt round-robin "
        "to materials Generate (the default form, each session requiring its own element), microstructure Denoise "
        "(each uploads the bundled raw X-ray slice cut to its own width) and health Generate (each its own target "
        "SOH values), and all press their button at the same moment; heavy steps wait in the job queue "
        "(`BATTGAI_MAX_JOBS`, default one less than the cores) and run in Ray worker processes.",
        "",
        "Finished: the page showed its result and its run is finished in the run store, within the session's time "
        "limit (`--timeout`, queueing included). Leakage: sessions whose "
        "downloaded result or stored run holds anything but their own element, upload or SOH values. Wall: button "
        "to result; queued: time the page said \"Waiting for a free worker\" (both polled each second). Idle page: "
        "a fresh session opening the home page every 10 s while the others work, timed until its title shows and "
        "its script has finished. Server RSS: the Streamlit process alone, sampled each second; before = after "
        "one home page; engine RSS: the server's child processes (Ray's services and the workers that run the heavy "
        "steps, `battgai.core.engine`). Machine load: the mean over the run of the 1-minute load average; the bench's "
        "browser and anything else running share the cores with the server, so a load above the core count slows "
        "every column.",
        "",
        f"Targets (issue 32): {TARGETS}.",
        "",
        HEADER,
        *(rows[k] for k in sorted(rows)),
    ])


def _kept_rows() -> list[str]:
    from battgai.bench import read_section

    # Rows of a table with other columns (an older bench) are dropped, not misread.
    columns = HEADER.splitlines()[0].count("|")
    return [line for line in read_section("load").splitlines()
            if re.match(r"\| \d+ \(", line) and line.count("|") == columns]


def main(argv: list[str] | None = None) -> None:
    from battgai.bench import write_section

    p = argparse.ArgumentParser(prog="python -m battgai.bench load")
    p.add_argument("--sessions", type=int, default=10, help="browser sessions at once")
    p.add_argument("--candidates", type=int, default=50, help="candidates per materials session (10-500, step 10)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds a session may take, queueing included")
    p.add_argument("--probe-every", type=float, default=10, help="seconds between idle-page probes")
    p.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = p.parse_args(argv)
    result = run_load(args.sessions, args.candidates, timeout_s=args.timeout, probe_every=args.probe_every)
    print(details(result), end="\n\n")
    print(HEADER + "\n" + row(result))
    if not args.no_write:
        write_section("load", section(result, _kept_rows()))
