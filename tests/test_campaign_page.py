"""The Campaigns page: bad input is refused before anything is stored, a start is detached, results show."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from battgai.core.runs import RunStore
from battgai.materials.discovery import campaign
from battgai.materials.discovery.campaign import CampaignFolder, CampaignSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    return RunStore()


def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    return at.switch_page("pages/campaigns.py").run()


def start(at: AppTest, **values) -> AppTest:
    for key, value in values.items():
        at.text_input(key=key).input(value) if key == "camp_ray" else at.number_input(key=key).set_value(value)
    at.button[0].click()  # the form's submit button
    return at.run()


def record(r: int, k: int, e_hull: float, voltage: float = 3.4):
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(5.6 + k / 10), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    settings = CampaignSettings(conditions="ion=Na", v_min=3.0, v_max=4.0, min_capacity=100)
    rec = {"id": campaign.candidate_id(r, k), "round": r, "index": k, "seed": campaign.round_seed(0, r),
           "model": "materials_gpt", "model_sha256": "x", "formula": "NaCl", "n_atoms": 2, "sg_found": 225,
           "valid": True, "smact": True, "elements_ok": True, "unique_generated": True, "new_generated": True,
           "known_match": "", "e_static": -3.0, "e_hull_static": e_hull, "voltage_static": voltage, "relaxed": True,
           "relax_note": "", "e_relaxed": -3.1, "e_hull": e_hull, "formation_energy": -2.0, "new": True,
           "unique": True, "stable": campaign.evaluate.is_stable(e_hull),
           "suspect": campaign.evaluate.is_suspect(e_hull), "sun": campaign.evaluate.is_stable(e_hull),
           "voltage": voltage, "capacity": campaign.battery.capacity_grav("NaCl", "Na"),
           "verdict": campaign.evaluate.verdict(e_hull), "potential": "chgnet", "generated": s, "structure": s}
    return rec | {"found": settings.target().found(rec)}


def stored_campaign(store: RunStore, fmt: int = campaign.FORMAT) -> Path:
    run = store.start(campaign.TASK, "test campaign", {})
    folder = CampaignFolder(run.path / "campaign")
    folder.create(CampaignSettings(conditions="ion=Na", rounds=2, per_round=2, relax=2, v_min=3.0, v_max=4.0,
                                   min_capacity=100), "x", {})
    if fmt != campaign.FORMAT:
        meta = folder.meta() | {"format": fmt, "battgai_version": "0.0.1"}
        folder.meta_path.write_text(json.dumps(meta))
    for r, hulls in enumerate([(0.02, -0.3), (0.5, 0.0)]):
        folder.commit({"round": r, "seed": 0, "seconds": 30.0, "finished": 0, "tally": {},
                       "candidates": [record(r, k, e) for k, e in enumerate(hulls)]})
    run.finish()
    return run.path


def test_impossible_conditions_are_said_and_nothing_is_stored(store):
    at = start(page(), camp_capacity_0=3000.0)  # the Li-ion cathode preset: Li4Si (1,920 mAh/g) is the most
    assert not at.exception, [e.value for e in at.exception]
    assert any("Campaign not started" in e.value and "1920 mAh/g" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert store.list(campaign.TASK) == []


def test_an_unreachable_ray_address_is_said_and_nothing_is_stored(store):
    at = start(page(), camp_ray="127.0.0.1:1")
    assert any("cannot reach a Ray cluster" in e.value for e in at.error)
    assert store.list(campaign.TASK) == []


def test_a_start_runs_the_cli_detached_into_a_new_run(store, monkeypatch):
    calls = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            calls.append((args, kwargs))

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    at = start(page(), camp_rounds=2, camp_per_round=4, camp_relax=2)
    assert not at.exception, [e.value for e in at.exception]
    (run,) = store.list(campaign.TASK)
    (args, kwargs), = calls
    assert args[1:4] == ["-m", "battgai", "campaign"] and args[args.index("--out") + 1] == str(run.path)
    assert args[args.index("--per-round") + 1] == "4" and kwargs["start_new_session"] is True
    assert run.status == "running"
    # The preset's battery objective, chosen with widgets, reaches the CLI as its options.
    conditions = args[args.index("--conditions") + 1]
    assert "ion=Li" in conditions and "required=Li" in conditions and "allowed=Li,Mn" in conditions
    assert (args[args.index("--v-min") + 1], args[args.index("--v-max") + 1]) == ("3.0", "4.5")
    assert args[args.index("--min-capacity") + 1] == "120.0"


def test_a_campaign_shows_rounds_suspects_and_downloads(store):
    stored_campaign(store)
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rounds"] == "2 / 2"
    assert metrics["Suspect"] == "1"  # -0.3 eV/atom below the hull
    assert metrics["S.U.N. (CHGNet)"] == "2 of 4 relaxed"  # 0.02 and 0.0; the suspect one is not counted
    assert metrics["Found"] == "2"  # the same two: NaCl at 3.4 V vs Na, 459 mAh/g
    assert metrics["DFT-confirmed"] == "-"  # no audit was asked for
    best = at.dataframe[-1].value
    assert best.iloc[-1]["verdict"] == "suspect"  # listed last, whatever its energy
    assert best.found.sum() == 2 and best.voltage.notna().all() and (best.capacity > 400).all()
    assert len(at.get("plotly_chart")) >= 2  # E_hull histogram, voltage vs capacity
    assert len(at.get("download_button")) == 2


def test_an_interrupted_campaign_resumes_with_one_click(store, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kw: calls.append(args))
    path = stored_campaign(store)
    meta = json.loads((path / "run.json").read_text())
    meta.update(status="running", owner={**meta["owner"], "started": 0.0})  # its driver died with it "running"
    (path / "run.json").write_text(json.dumps(meta))
    assert store.get(path.name).status == "interrupted"
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    button = next((b for b in at.button if b.label == "Resume"), None)
    assert button is not None, [b.label for b in at.button]
    button.click().run()
    (args,) = calls
    assert args[args.index("--out") + 1] == str(path) and "--resume" in args


def test_a_campaign_of_another_version_is_named_and_left_alone(store):
    path = stored_campaign(store, fmt=campaign.FORMAT + 1)
    before = (path / "campaign" / "campaign.json").read_bytes()
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    assert any("folder format" in w.value for w in at.warning)
    assert (path / "campaign" / "campaign.json").read_bytes() == before
