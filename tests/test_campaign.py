"""Campaigns without Ray: a round's records, the suspect guard, the folder's atomic rounds and bad input."""

from __future__ import annotations

import json
import math

import pytest

from battgai.materials.checks import evaluate
from battgai.materials.discovery import campaign
from battgai.materials.discovery.campaign import CampaignError, CampaignFolder, CampaignSettings
from battgai.materials.discovery.engine import PotentialWorker

SMALL = CampaignSettings(rounds=2, per_round=3, relax=2, relax_steps=3)


class InProcessEngine:
    """The engine's interface on one in-process worker; ``shift`` moves every relaxed energy (eV/atom)."""

    def __init__(self, shift: float = 0.0, static_shift: float = 0.0):
        self.worker = PotentialWorker()
        self.shift, self.static_shift = shift, static_shift
        self.relaxed = 0

    def static_energies(self, structures, progress=None):
        return [e + self.static_shift for e in self.worker.static(list(structures))]

    def relax(self, structures, steps, fmax, progress=None):
        out = [self.worker.relax(s, steps, fmax) for s in structures]
        self.relaxed += len(out)
        return [(s, e + self.shift, why) for s, e, why in out]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("campaign")
    eng = InProcessEngine()
    summaries = campaign.run_campaign(SMALL, root, eng)
    return root, summaries, eng


def test_rounds_are_stored_with_provenance(finished):
    root, summaries, _ = finished
    folder = CampaignFolder(root)
    assert folder.committed() == [0, 1]
    rows = folder.rows()
    assert [r["id"] for r in rows] == [f"r00{r}-000{k}" for r in range(2) for k in range(3)]
    meta = folder.meta()
    for r in rows:
        assert r["model"] == SMALL.model and r["model_sha256"] == meta["model_sha256"]
        assert r["seed"] == campaign.round_seed(SMALL.seed, r["round"])
        assert (root / "cifs" / f"{r['id']}.cif").exists()
    assert sum(r["relaxed"] for r in rows) == sum(s["relaxed"] for s in summaries) <= 4
    assert (root / "candidates.csv").read_text().count("\n") == len(rows) + 1


def test_a_finished_campaign_reruns_nothing(finished):
    root, _, _ = finished
    before = (root / "rounds" / "round_0000.json").read_bytes()
    eng = InProcessEngine()
    campaign.run_campaign(SMALL, root, eng)
    assert eng.relaxed == 0
    assert (root / "rounds" / "round_0000.json").read_bytes() == before


def test_crystals_far_below_the_hull_are_suspect_never_stable(tmp_path, one_torch_thread):
    # Every relaxed energy 5 eV/atom lower puts each crystal far below the known hull: a hole of the potential.
    campaign.run_campaign(CampaignSettings(rounds=1, per_round=3, relax=2, relax_steps=2), tmp_path,
                          InProcessEngine(shift=-5.0))
    relaxed = [r for r in CampaignFolder(tmp_path).rows() if r["relaxed"]]
    assert relaxed
    for r in relaxed:
        assert r["e_hull"] < -evaluate.SUSPECT_BELOW_HULL
        assert r["suspect"] and not r["stable"] and not r["sun"] and r["verdict"] == "suspect"
    assert campaign.summary(CampaignFolder(tmp_path).read_round(0))["suspect"] == len(relaxed)


def test_crystals_suspect_at_the_screen_are_not_relaxed(tmp_path, one_torch_thread):
    # Static energies 5 eV/atom lower: every crystal is suspect before relaxing, and relaxing only lowers it more.
    eng = InProcessEngine(static_shift=-5.0)
    campaign.run_campaign(CampaignSettings(rounds=1, per_round=3, relax=2, relax_steps=2), tmp_path, eng)
    rows = CampaignFolder(tmp_path).rows()
    assert rows and eng.relaxed == 0 and not any(r["relaxed"] for r in rows)
    # ... and they count as suspect where they were met: at the screen.
    screened = [r for r in rows if math.isfinite(r["e_hull_static"])]
    assert screened and all(r["suspect"] and r["verdict"] == "suspect at the screen" for r in screened)
    assert campaign.summary(CampaignFolder(tmp_path).read_round(0))["suspect"] == len(screened)


def test_a_battery_campaign_finds_only_crystals_with_the_ion_in_the_window(tmp_path, one_torch_thread):
    s = CampaignSettings(conditions="allowed=Li,Mn,O;required=Li;ion=Li", rounds=1, per_round=4, relax=3,
                         relax_steps=3, v_min=1.0, v_max=5.0, min_capacity=100)
    campaign.run_campaign(s, tmp_path, InProcessEngine())
    rows = CampaignFolder(tmp_path).rows()
    relaxed = [r for r in rows if r["relaxed"]]
    assert relaxed, "nothing relaxed: the screen let no Li crystal through"
    target = s.target()
    for r in rows:
        assert r["capacity"] == pytest.approx(campaign.battery.capacity_grav(r["formula"], "Li"))
    for r in relaxed:  # only crystals with Li, the capacity and a static voltage near the window are relaxed
        assert r["capacity"] >= 100 and math.isfinite(r["voltage"])
        assert target.voltage_ok(r["voltage_static"], campaign.VOLTAGE_SCREEN_MARGIN)
        assert r["found"] == (r["sun"] and 1.0 <= r["voltage"] <= 5.0)


def test_the_stop_rule_counts_found_crystals_and_cpu_time():
    rounds = [{"cpu_seconds": 1800.0, "candidates": [{"found": True}, {"found": False}]},
              {"cpu_seconds": 1800.0, "candidates": [{"found": True}]}]
    assert campaign.stop_reason(CampaignSettings(), rounds) == ""
    assert "2 found" in campaign.stop_reason(CampaignSettings(stop_found=2), rounds)
    assert campaign.stop_reason(CampaignSettings(stop_found=3), rounds) == ""
    assert "CPU-time budget" in campaign.stop_reason(CampaignSettings(max_cpu_hours=1.0), rounds)
    assert campaign.stop_reason(CampaignSettings(max_cpu_hours=1.5), rounds) == ""


def test_verdicts():
    assert [evaluate.verdict(e) for e in (-0.2, -0.04, 0.09, 0.3, math.nan)] == [
        "suspect", "stable", "stable", "unstable", "no hull"]


def test_impossible_conditions_are_refused_before_work(tmp_path):
    s = CampaignSettings(conditions="required=Ar", rounds=1, per_round=2, relax=1)
    with pytest.raises(CampaignError, match="Ar"):
        campaign.run_campaign(s, tmp_path / "c", InProcessEngine.__new__(InProcessEngine))
    assert not (tmp_path / "c").exists()


def test_a_folder_of_another_version_is_left_alone(tmp_path):
    meta = {"format": campaign.FORMAT + 1, "settings": {}, "battgai_version": "9.9"}
    (tmp_path / "campaign.json").write_text(json.dumps(meta))
    with pytest.raises(CampaignError, match="folder format"):
        campaign.run_campaign(SMALL, tmp_path, None)
    assert json.loads((tmp_path / "campaign.json").read_text()) == meta


def test_other_settings_are_refused(finished):
    root, _, _ = finished
    with pytest.raises(CampaignError, match="per_round"):
        campaign.prepare(CampaignSettings(rounds=2, per_round=4, relax=2, relax_steps=3), CampaignFolder(root))
    campaign.prepare(CampaignSettings(rounds=5, per_round=3, relax=2, relax_steps=3), CampaignFolder(root))
    # The stop rule may change too (a bigger budget for a campaign that stopped on it), never what a round does.
    campaign.prepare(CampaignSettings(rounds=5, per_round=3, relax=2, relax_steps=3, max_cpu_hours=2.0,
                                      stop_found=10), CampaignFolder(root))


def test_a_full_disk_is_said_before_work(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(CampaignError, match="MB free"):
        campaign.run_campaign(SMALL, tmp_path / "c", None)
    assert not (tmp_path / "c").exists()


def test_cli_refuses_an_unreachable_ray_address_before_work(tmp_path, capsys):
    from battgai.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["campaign", "--rounds", "1", "--per-round", "2", "--relax", "1", "--out", str(tmp_path / "c"),
              "--ray-address", "127.0.0.1:1"])
    assert exc.value.code == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_learning_campaign_samples_each_round_with_its_stored_model(tmp_path, one_torch_thread):
    # Two learning steps between rounds: round 1 samples a new model, stored before the round starts; a
    # driver killed after learning (round file missing) or during it (model missing too) resumes with the
    # same model and the same crystals.
    settings = CampaignSettings(rounds=2, per_round=3, relax=1, relax_steps=3, learn_steps=2, learn_batch=4)
    campaign.run_campaign(settings, tmp_path, InProcessEngine())
    folder = CampaignFolder(tmp_path)
    first, second = folder.read_round(0), folder.read_round(1)
    parent_sha = folder.meta()["model_sha256"]
    assert {c["model_sha256"] for c in first["candidates"]} == {parent_sha} and first["learned"] == {}
    learned_sha = second["candidates"][0]["model_sha256"]
    assert learned_sha != parent_sha and second["learned"]["steps"] == 2
    assert learned_sha == registry_sha(folder.model_path(1))
    ids = [(c["id"], c["formula"]) for c in second["candidates"]]
    for lost in ([folder.rounds_dir / "round_0001.json"],
                 [folder.rounds_dir / "round_0001.json", folder.model_path(1)]):
        for path in lost:
            path.unlink()
        campaign.run_campaign(settings, tmp_path, InProcessEngine())
        again = folder.read_round(1)
        assert again["candidates"][0]["model_sha256"] == learned_sha
        assert [(c["id"], c["formula"]) for c in again["candidates"]] == ids


def registry_sha(path) -> str:
    from battgai.core.registry import sha256_file

    return sha256_file(path)
