"""Campaigns on Ray: a 3-node local cluster, a worker killed mid-task, and the driver killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from battgai.materials.discovery import campaign
from battgai.materials.discovery.campaign import CampaignFolder, CampaignSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster():
    """Three Ray nodes of one CPU each on this machine, shut down (with every process) after the test."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    from battgai.core import engine

    engine.connect(c.address)
    yield c
    ray.shutdown()
    c.shutdown()


def test_campaign_on_a_three_node_cluster(cluster, tmp_path):
    import ray

    from battgai.materials.discovery.engine import Engine

    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    eng = Engine()
    assert eng.n_workers == 3
    s = CampaignSettings(rounds=1, per_round=3, relax=3, relax_steps=3)
    summaries = campaign.run_campaign(s, tmp_path, eng)
    rows = CampaignFolder(tmp_path).rows()
    assert len(rows) == 3 and summaries[0]["sampled"] == 3
    eligible = [r for r in rows if r["valid"] and r["unique_generated"] and r["new_generated"] is not False]
    assert eligible and all(r["relaxed"] or r["relax_note"] for r in eligible)

    # A worker killed mid-relaxation is restarted and its task run again: every result comes back.
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.8), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    victim = eng.pids()[0]
    results = {}
    t = threading.Thread(target=lambda: results.update(out=eng.relax([nacl] * 3, steps=60, fmax=1e-4)))
    t.start()
    time.sleep(1.5)
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=240)
    assert len(results["out"]) == 3
    assert all(final is not None for final, _, _ in results["out"])
    assert victim not in eng.pids()
    eng.close()


def _cli(out: Path, rounds: int = 3) -> list[str]:
    return [sys.executable, "-m", "battgai", "campaign", "--rounds", str(rounds), "--per-round", "3", "--relax",
            "1", "--relax-steps", "3", "--workers", "1", "--out", str(out)]


def test_driver_killed_with_sigkill_resumes_without_losing_or_repeating(tmp_path):
    import psutil

    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    out = tmp_path / "killed"
    driver = subprocess.Popen(_cli(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "rounds" / "round_0000.json"
    deadline = time.time() + 180
    while not first.exists() and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists(), driver.stderr.read().decode()[-2000:] if driver.poll() is not None else "no round"
    ray_procs = psutil.Process(driver.pid).children(recursive=True)
    driver.kill()  # SIGKILL: no handler, no cleanup
    driver.wait()
    driver.stderr.close()
    committed = CampaignFolder(out).committed()
    assert committed and committed == list(range(len(committed)))
    kept = first.read_bytes()

    resumed = subprocess.run(_cli(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = CampaignFolder(out).rows()
    ids = [r["id"] for r in rows]
    assert ids == [campaign.candidate_id(r, k) for r in range(3) for k in range(3)]  # none lost, none twice
    assert first.read_bytes() == kept  # a committed round is never redone
    assert (out / "candidates.csv").read_text().count("\n") == 10
    # The killed driver's local Ray goes with it (its agents notice the dead raylet within about a minute).
    _, alive = psutil.wait_procs(ray_procs, timeout=150)
    assert not alive, [p.pid for p in alive]
