"""DFT checks with GPAW on one-to-four-atom cells at a cheap preset (a few seconds each)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

pytest.importorskip("gpaw", reason="GPAW is installed by `make install` (requirements.txt)")

from pymatgen.core import Lattice, Structure

from battgai.materials.dft import hull, verify
from battgai.materials.dft.calculator import DFTEnergy, DFTError, compute
from battgai.materials.dft.settings import PRESETS, Preset, hubbard_u, magnetic_elements, run_settings
from battgai.materials.dft.store import DFTStore

CHEAP = Preset("test", ecut=250.0, kpoint_density=2.0, smearing=0.1, scf_energy=1e-3, max_scf=60, relax=False,
               max_atoms=4, max_seconds=120.0)


def li_bcc() -> Structure:
    return Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def al_fcc() -> Structure:
    return Structure(Lattice.cubic(4.04), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def lial_b2() -> Structure:
    return Structure(Lattice.cubic(3.18), ["Li", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def li3_distorted() -> Structure:
    """Three Li atoms that no primitive-cell reduction can shrink: a reference beyond a 2-atom limit."""
    return Structure(Lattice.orthorhombic(3.4, 3.5, 9.9), ["Li"] * 3, [[0, 0, 0], [0.5, 0.5, 0.31], [0, 0.5, 0.69]])


def refs_li_al(tmp_path, extra: dict | None = None):
    """Reference phases Li and Al (and ``extra`` id -> (formula, structure, energy)) with given potential energies."""
    from battgai.materials.checks.stability import EnergyCache, ReferencePhases

    phases = {"li": ("Li", li_bcc(), -1.9), "al": ("Al", al_fcc(), -3.7), **(extra or {})}
    cache = EnergyCache(tmp_path / "chgnet.json")
    cache.values = {k: e for k, (_, _, e) in phases.items()}
    return ReferencePhases(list(phases), [f for f, _, _ in phases.values()],
                           cif_of=lambda i: phases[i][1].to(fmt="cif"), cache=cache)


def test_settings_follow_the_materials_project():
    feo = Structure(Lattice.cubic(4.3), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    licoo2 = Structure(Lattice.cubic(5), ["Li", "Co", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
    fe = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert hubbard_u(feo) == {"Fe": 5.3} and hubbard_u(licoo2) == {"Co": 3.32}
    assert hubbard_u(fe) == {} and hubbard_u(lial_b2()) == {}  # +U only in oxides and fluorides
    assert magnetic_elements(licoo2) == ["Co"] and magnetic_elements(lial_b2()) == []
    assert run_settings(feo).run_type == "GGA+U" and run_settings(fe).spin_polarised
    for preset in PRESETS.values():  # every number an energy depends on is named in its provenance
        prov = preset.provenance()
        assert {"ecut", "kpoint_density", "smearing", "scf_energy", "max_atoms", "max_seconds", "xc"} <= set(prov)
    assert PRESETS["screen"].key != PRESETS["accurate"].key


def test_compute_gives_an_energy_and_names_its_settings():
    e, final = compute(al_fcc(), CHEAP)
    assert e.n_atoms == 1 and len(final) == 1  # the primitive cell is what is computed
    assert math.isfinite(e.energy_per_atom) and e.run_type == "GGA" and not e.spin_polarised
    assert e.correction == 0.0 and e.preset == CHEAP.key and e.scf_iterations > 0


@pytest.mark.parametrize("case", ["no_setup", "too_many_atoms", "not_converged", "time_limit", "interrupted"])
def test_compute_refuses_with_a_reason(case):
    structure, preset, on_step = lial_b2(), CHEAP, None
    if case == "no_setup":
        structure = Structure(Lattice.cubic(2.8), ["Tc"], [[0, 0, 0]])
    elif case == "too_many_atoms":
        preset = dataclasses.replace(CHEAP, max_atoms=1)
    elif case == "not_converged":
        preset = dataclasses.replace(CHEAP, max_scf=2)
    elif case == "time_limit":
        preset = dataclasses.replace(CHEAP, max_seconds=0.0)
    else:
        def on_step(i, s):
            raise RuntimeError("Stop pressed")
    with pytest.raises(DFTError) as err:
        compute(structure, preset, on_step=on_step)
    assert err.value.kind == case
    assert {"no_setup": "Tc", "too_many_atoms": "at most 1", "not_converged": "2 iterations",
            "time_limit": "limit", "interrupted": "interrupted"}[case] in str(err.value)


def _energy(formula: str, e: float, hubbard: dict | None = None) -> DFTEnergy:
    return DFTEnergy(formula, 2, e, e, 0.0, "GGA+U" if hubbard else "GGA", hubbard or {}, False, 0.0, 1, 1.0, "k",
                     False)


def test_hull_numbers_and_mixing_rule():
    crystal, li, al = _energy("LiAl", -3.0), _energy("Li", -1.9), _energy("Al", -3.7)
    assert hull.e_above_hull(crystal, [(0.5, li), (0.5, al)]) == pytest.approx(-3.0 + 2.8)
    assert hull.formation_energy(crystal, {"Li": li, "Al": al}) == pytest.approx(-0.2)
    assert math.isnan(hull.formation_energy(crystal, {"Li": li}))
    feo, fe = _energy("FeO", -7.0, {"Fe": 5.3}), _energy("Fe", -8.0)
    assert "Fe" in hull.mixing_problem([feo, fe]) and hull.mixing_problem([feo, _energy("Fe2O3", -7, {"Fe": 5.3})]) \
        is None
    assert hull.verdict(0.05, None) == "confirmed" and hull.verdict(0.2, None) == "refuted"
    assert hull.verdict(0.0, "mixed") == "not comparable"


def test_verify_computes_crystal_and_decomposition_and_reuses_references(tmp_path, monkeypatch):
    refs = refs_li_al(tmp_path)
    store = DFTStore(CHEAP, root=tmp_path / "dft", bundled=None)
    [check] = verify.verify([lial_b2()], CHEAP, refs=refs, as_given=True, store=store)
    assert check.verdict in ("confirmed", "refuted") and not check.error
    assert {rid for rid, _, _ in check.decomposition} == {"li", "al"}
    # the same numbers from the calculator directly: E_hull = E(LiAl) - (E(Li) + E(Al)) / 2
    e_lial, e_li, e_al = (compute(s, CHEAP)[0].energy_per_atom for s in (lial_b2(), li_bcc(), al_fcc()))
    assert check.e_above_hull == pytest.approx(e_lial - (e_li + e_al) / 2, abs=2e-3)
    assert check.formation_energy == pytest.approx(check.e_above_hull, abs=1e-9)  # the hull is Li + Al here
    assert check.verdict == hull.verdict(check.e_above_hull, None)
    assert set(json.loads(store.path.read_text())) == {"li", "al"}
    computed = []
    monkeypatch.setattr(verify, "compute", lambda s, p, on_step=None: computed.append(s) or compute(s, p))
    [again] = verify.verify([lial_b2()], CHEAP, refs=refs, as_given=True, store=store)
    assert len(computed) == 1 and again.e_above_hull == pytest.approx(check.e_above_hull, abs=2e-3)


def test_verify_failures_store_no_result(tmp_path):
    refs = refs_li_al(tmp_path, {"li3": ("Li", li3_distorted(), -2.5)})  # the lowest Li: on the hull
    store = DFTStore(dataclasses.replace(CHEAP, max_atoms=2), root=tmp_path / "dft", bundled=None)
    tc = Structure(Lattice.cubic(2.8), ["Tc", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    checks = verify.verify([lial_b2(), tc], dataclasses.replace(CHEAP, max_atoms=2), refs=refs, as_given=True,
                           store=store)
    assert [c.verdict for c in checks] == ["failed", "failed"]
    assert "li3" in checks[0].error and "3 atoms" in checks[0].error
    assert "no PBE PAW setup for Tc" in checks[1].error
    assert all(math.isnan(c.e_above_hull) and c.crystal is None for c in checks)
    assert not store.path.exists()  # nothing was computed, nothing stored


def test_interrupted_verify_keeps_finished_references_only(tmp_path):
    refs = refs_li_al(tmp_path)
    store = DFTStore(CHEAP, root=tmp_path / "dft", bundled=None)
    seen = []

    def progress(done, total, label):
        seen.append(label)
        if done == 2 and "SCF" in label:  # stop inside the third calculation
            raise RuntimeError("Stop pressed")

    with pytest.raises(DFTError, match="interrupted"):
        verify.verify([lial_b2()], CHEAP, refs=refs, as_given=True, store=store, progress=progress)
    kept = json.loads(store.path.read_text()) if store.path.exists() else {}
    # crystal, then the two references: the one finished before the stop is kept, the crystal never is
    assert len(kept) == 1 and set(kept) <= {"li", "al"}
    assert all(np.isfinite(v["energy_per_atom"]) for v in kept.values())


def test_verify_cli_json_lines(tmp_path, monkeypatch, capsys):
    from battgai import cli
    from battgai.materials.checks import references
    from battgai.materials.dft import settings

    refs = refs_li_al(tmp_path)
    monkeypatch.setattr(references, "reference_phases", lambda potential="chgnet": (refs, "test references"))
    monkeypatch.setitem(settings.PRESETS, "screen", dataclasses.replace(CHEAP, name="screen"))
    good, bad = tmp_path / "LiAl.cif", tmp_path / "broken.cif"
    lial_b2().to(filename=str(good))
    bad.write_text("data_x\n_cell_length_a 3\n")
    with pytest.raises(SystemExit) as done:
        cli.main(["verify", str(good), str(bad), "--dft", "--as-given", "--json"])
    assert done.value.code == 1  # one file could not be read
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert {"formula", "new", "matches_known", "e_above_hull", "e_above_hull_dft", "verdict"} <= set(lines[0])
    assert lines[0]["formula"] == "LiAl" and lines[0]["verdict"] in ("confirmed", "refuted")
    assert lines[1]["file"].endswith("broken.cif") and lines[1]["error"]


def test_dft_panel_runs_a_stored_check_beside_the_potential(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from battgai.core.runs import RunStore
    from battgai.materials.checks import references
    from battgai.materials.dft import settings

    monkeypatch.setenv("BATTGAI_HOME", str(tmp_path / "home"))
    refs = refs_li_al(tmp_path)
    monkeypatch.setattr(references, "reference_phases", lambda potential="chgnet": (refs, "test references"))
    monkeypatch.setitem(settings.PRESETS, "screen", dataclasses.replace(CHEAP, name="screen"))

    def script():
        from pymatgen.core import Lattice, Structure

        from battgai.materials.generation.sample import Conditions
        from battgai.materials.pipeline import check
        from components.dft_panel import dft_panel

        lial = Structure(Lattice.cubic(3.18), ["Li", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        cands = [check(lial, Conditions(), None, source="uploaded")]
        dft_panel(cands, [0], "chgnet", "CHGNet", lambda run, rows: run.write("dft_checks.json", repr(rows).encode()))

    at = AppTest.from_function(script, default_timeout=120).run()
    at.checkbox(key="mat_dft_as_given").check()
    at.button(key="mat_dft_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert table.formula.tolist() == ["LiAl"] and table.verdict.iloc[0] in ("confirmed", "refuted")
    assert {"E_hull CHGNet", "E_hull DFT", "E_form DFT"} <= set(table.columns)
    (rec,) = RunStore().list("materials")
    assert rec.task == "materials.dft" and rec.status == "finished" and "dft_checks.json" in rec.files
    assert rec.settings["preset"]["ecut"] == CHEAP.ecut and rec.settings["as_given"] is True


def test_campaign_dft_audit_checks_the_best_found_crystals_once(tmp_path, monkeypatch):
    from battgai.materials.checks import references
    from battgai.materials.dft import settings
    from battgai.materials.discovery import campaign

    refs = refs_li_al(tmp_path)
    monkeypatch.setattr(references, "reference_phases", lambda potential="chgnet": (refs, "test references"))
    monkeypatch.setitem(settings.PRESETS, "screen", dataclasses.replace(CHEAP, name="screen"))
    folder = campaign.CampaignFolder(tmp_path / "campaign")
    folder.rounds_dir.mkdir(parents=True)
    cands = [{"id": f"r000-000{k}", "found": found, "e_hull": e, "structure": lial_b2().as_dict()}
             for k, (found, e) in enumerate([(True, 0.05), (False, -0.2), (True, 0.01)])]
    (folder.rounds_dir / "round_0000.json").write_text(json.dumps({"round": 0, "candidates": cands}))

    class Engine:  # the campaign engine's dft(), in this process
        calls = 0

        def dft(self, structures, preset, progress=None):
            Engine.calls += 1
            return [verify.calc_task(s, preset) for s in structures]

    s = campaign.CampaignSettings(dft_audit=1)
    audit = campaign.dft_audit(folder, s, Engine())
    assert audit["ids"] == ["r000-0002"]  # the found one with the lowest E_hull; not the one not found
    assert audit["rows"][0]["verdict"] in ("confirmed", "refuted") and folder.dft_audit() == audit
    assert audit["confirmed"] + audit["refuted"] == 1
    assert campaign.dft_audit(folder, s, Engine()) == audit and Engine.calls == 1  # kept, not recomputed
    assert campaign.CampaignSettings(dft_audit=campaign.MAX_DFT_AUDIT + 1).problems()


def test_bundled_energies_seed_a_fresh_store(tmp_path):
    from battgai.materials.dft.store import export_bundled

    first = DFTStore(CHEAP, root=tmp_path / "a", bundled=None)
    first.put("li", _energy("Li", -1.9))
    assert export_bundled(first, tmp_path / "bundled.json") == 1
    fresh = DFTStore(CHEAP, root=tmp_path / "b", bundled=tmp_path / "bundled.json")
    assert fresh.get("li") == _energy("Li", -1.9) and fresh.get("al") is None
    other = DFTStore(dataclasses.replace(CHEAP, ecut=300.0), root=tmp_path / "b", bundled=tmp_path / "bundled.json")
    assert other.get("li") is None  # another preset's energies are never reused


def test_accurate_style_preset_relaxes_with_dft():
    stretched = Structure(Lattice.cubic(3.2), ["Li", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # LiAl B2, 3.18 A
    preset = dataclasses.replace(CHEAP, relax=True, fmax=0.1, relax_steps=8)
    e, final = compute(stretched, preset)
    assert e.relaxed and final.volume != pytest.approx(stretched.volume, rel=1e-4)
    single, _ = compute(stretched, CHEAP)
    assert e.energy_per_atom <= single.energy_per_atom + 1e-3  # relaxing never raises the energy


def test_bundled_references_without_structures_say_what_dft_needs(tmp_path):
    from battgai.materials.checks.bundle import BundleError

    refs = refs_li_al(tmp_path)

    def no_structure(rid):
        raise BundleError(f"{rid} not bundled")

    refs.cif_of = no_structure
    [check] = verify.verify([lial_b2()], CHEAP, refs=refs, as_given=True,
                            store=DFTStore(CHEAP, root=tmp_path / "dft", bundled=None))
    assert check.verdict == "failed" and "shared MP-20 data" in check.error


def test_a_structure_handed_over_by_ray_is_computed(tmp_path):
    """Ray gives a worker read-only arrays; the MP2020 oxide check of an oxide failed on them."""
    ray = pytest.importorskip("ray")
    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.65, 2.97), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    preset = dataclasses.replace(CHEAP, max_atoms=6, kpoint_density=1.5, scf_energy=1e-2)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        energy, _, error = ray.get(ray.remote(verify.calc_task).remote(rutile, preset))
    finally:
        if started:
            ray.shutdown()
    assert not error and energy.formula == "TiO2" and energy.correction < 0  # the oxide correction applied
