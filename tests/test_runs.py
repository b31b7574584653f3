"""The run store and the job queue: what is written survives, what was cut off says so."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import zipfile
from io import BytesIO

import numpy as np
import pytest

from battgai.core import jobs, runs
from battgai.core.provenance import Provenance


@pytest.fixture
def store(tmp_path):
    return runs.RunStore(tmp_path)


def test_a_finished_run_keeps_its_files_provenance_and_state(store):
    from pymatgen.core import Lattice, Structure

    from battgai.materials.pipeline import Candidate, Tally

    s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cand = Candidate(s, "generated", 225, 225, True, True, True, e_per_atom=-3.2)
    prov = Provenance.now("materials_gpt", "abc", {"n": 1}, seed=3)
    with store.start("materials.generate", "1 candidate", {"n": 1}) as run:
        run.write("0_NaCl.cif", b"data_NaCl\n")
        run.set(provenance=prov)
        run.save_state({"cands": [cand], "tally": Tally(sampled=2, accepted=1), "prov": prov,
                        "shape": (2, 3), "by_phase": {1: np.arange(3.0)}})
    rec = store.get(run.id)
    assert rec.status == "finished" and rec.model == "materials_gpt" and rec.files == ("0_NaCl.cif",)
    state = rec.state()
    back = state["cands"][0]
    assert back.structure == s and back.e_per_atom == -3.2 and math.isnan(back.voltage)
    assert state["tally"].accepted == 1 and state["prov"] == prov and state["shape"] == (2, 3)
    np.testing.assert_array_equal(state["by_phase"][1], np.arange(3.0))
    with zipfile.ZipFile(BytesIO(rec.zip())) as zf:
        assert set(zf.namelist()) == {"0_NaCl.cif", "provenance.json", "run.json"}
        assert json.loads(zf.read("provenance.json"))["seed"] == 3


def test_an_exception_marks_the_run_failed_and_a_script_stop_marks_it_stopped(store):
    with pytest.raises(RuntimeError), store.start("microstructure.enhance", "x") as run:
        raise RuntimeError("boom")
    assert store.get(run.id).status == "failed" and "boom" in store.get(run.id).error

    class ScriptStop(BaseException):  # what Streamlit raises in a script when the user stops it
        pass

    with pytest.raises(ScriptStop), store.start("microstructure.enhance", "y") as run2:
        raise ScriptStop
    assert store.get(run2.id).status == "stopped"
    assert [r.status for r in store.list("microstructure")] == ["stopped", "failed"]


def test_a_run_whose_process_was_killed_shows_as_interrupted(store):
    code = ("import os, sys; from battgai.core import runs;"
            "r = runs.RunStore(sys.argv[1]).start('health.generate', 't');"
            "r.write('half.csv', b'1'); print(r.id, flush=True); os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == -9
    rec = store.get(out.stdout.strip())
    assert rec.status == "interrupted" and rec.files == ("half.csv",)
    # while its owner lives, a run is running
    live = store.start("health.generate", "live")
    assert store.get(live.id).status == "running"


def test_state_refuses_what_would_need_pickle_or_import_foreign_classes(store):
    run = store.start("health.experiment", "t")
    with pytest.raises(TypeError, match="cannot store"):
        run.save_state({"f": object()})
    (run.path / "state.json").write_text(json.dumps({"__dataclass__": "os:system", "fields": {}}))
    with pytest.raises(ValueError, match="not a battgai class"):
        store.get(run.id).state()


def test_bad_names_and_unknown_runs(store):
    run = store.start("materials.energies", "t")
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            run.write(bad, b"")
    with pytest.raises(runs.RunNotFound):
        store.get("../../etc")
    with pytest.raises(ValueError, match="unknown task"):
        store.start("nope", "t")


def test_home_follows_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(runs.HOME_ENV, str(tmp_path / "h"))
    assert runs.RunStore().root == tmp_path / "h"
    monkeypatch.delenv(runs.HOME_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert runs.home() == tmp_path / "x" / "battgai"


def test_the_queue_runs_at_most_its_slots_in_arrival_order():
    q = jobs.JobQueue(slots=1)
    order, places, most = [], [], [0]
    lock = threading.Lock()

    def job(i: int) -> None:
        with q.slot(f"job{i}", on_wait=lambda place, busy: places.append((i, place)), poll=0.01):
            with lock:
                most[0] = max(most[0], len(q.running()))
            order.append(i)
            time.sleep(0.05)

    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=job, args=(i,)))
        threads[-1].start()
        time.sleep(0.01)  # arrive in order
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3] and most[0] == 1
    assert (3, 3) in places  # the fourth saw two jobs ahead of it while the first ran


def test_a_waiter_that_stops_leaves_the_queue():
    q = jobs.JobQueue(slots=1)
    release = threading.Event()

    def holder():
        with q.slot("holder"):
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    time.sleep(0.05)

    def give_up(place, busy):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), q.slot("leaver", on_wait=give_up, poll=0.01):
        pass
    assert q.waiting() == []
    release.set()
    t.join()
    with q.slot("next"):
        assert q.running() == ["next"]
