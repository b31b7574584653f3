"""SevenNet-0 as the second potential: energies on CHGNet's scale, one potential per hull, relaxation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from battgai.core.demo import licoo2
from battgai.materials.checks import stability
from battgai.materials.generation.sample import Conditions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def li_o_system() -> dict[str, Structure]:
    """A tiny Li-O reference set: bcc Li, an O2 molecule in a box, antifluorite Li2O."""
    return {
        "li": Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "o2": Structure(Lattice.cubic(8.0), ["O", "O"], [[0, 0, 0], [0.152, 0, 0]]),  # O-O 1.22 A
        "li2o": Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.61), ["Li", "O"],
                                          [[0.25, 0.25, 0.25], [0, 0, 0]]).get_primitive_structure(),
    }


def test_unknown_potential_is_a_clear_value_error():
    with pytest.raises(ValueError, match="potential must be one of"):
        stability.static_energies([nacl()], potential="mace")
    with pytest.raises(ValueError, match="potential must be one of"):
        stability.relax(nacl(), potential="CHGNet")
    with pytest.raises(ValueError, match="potential must be one of"):
        stability.EnergyCache(potential="m3gnet")


def test_cache_file_per_potential_keeps_the_chgnet_name(tmp_path):
    assert stability.energy_cache_path("chgnet") == stability.ENERGY_CACHE
    assert stability.energy_cache_path("chgnet").name == "chgnet_static_energies.json"
    assert stability.energy_cache_path("sevennet").name == "sevennet_static_energies.json"
    refs = stability.ReferencePhases(["li"], ["Li"], cif_of=str, potential="sevennet")
    assert refs.cache.path == stability.energy_cache_path("sevennet") and refs.cache.potential == "sevennet"
    with pytest.raises(ValueError, match="holds chgnet energies"):
        stability.ReferencePhases(["li"], ["Li"], cif_of=str, cache=stability.EnergyCache(tmp_path / "c.json"),
                                  potential="sevennet")


def test_mp2020_correction_of_an_oxide_and_an_element():
    # LiCoO2: two O at the oxide correction (-0.687) and one Co at the GGA+U mixing correction (-1.638), per 4 atoms.
    assert stability.mp2020_correction(licoo2()) == pytest.approx((2 * -0.687 - 1.638) / 4, abs=1e-3)
    assert stability.mp2020_correction(li_o_system()["li"]) == 0.0


@pytest.mark.parametrize("make", [nacl, licoo2])
def test_sevennet_static_energy_is_on_chgnet_scale(make):
    s = make()
    e7 = stability.static_energies([s], potential="sevennet")[0]
    e_chg = stability.static_energies([s])[0]
    assert np.isfinite(e7) and -10.0 < e7 < -1.0
    # Raw SevenNet-0 is 0.28 (NaCl) and 0.75 (LiCoO2) eV/atom above CHGNet: only the MP2020 corrections bridge it.
    assert abs(e7 - e_chg) < 0.1


def test_reference_phases_with_sevennet_give_a_finite_hull(tmp_path):
    structures = li_o_system()
    cache = stability.EnergyCache(tmp_path / "sevennet.json", potential="sevennet")
    refs = stability.ReferencePhases(list(structures), ["Li", "O2", "Li2O"],
                                     cif_of=lambda i: structures[i].to(fmt="cif"), cache=cache, potential="sevennet")
    e = float(stability.static_energies([structures["li2o"]], potential="sevennet")[0])
    h = refs.hull("Li2O", e)
    assert h.e_above_hull == pytest.approx(0.0, abs=1e-6) and h.n_references == 3
    # DFT (MP, corrected) formation energy of Li2O is -2.07 eV/atom; SevenNet-0 + MP2020 gives -2.06.
    assert h.formation_energy == pytest.approx(-2.07, abs=0.2)
    assert math.isfinite(refs.hull("Li2O", e + 0.2).e_above_hull)
    assert set(cache.values) == {"li", "o2", "li2o"} and (tmp_path / "sevennet.json").exists()
    assert cache.values["li2o"] == pytest.approx(e)


def test_relax_with_sevennet_does_not_raise_the_energy():
    s = nacl().get_primitive_structure()
    s.apply_strain(0.04)
    s.perturb(0.05, 0.05)
    before = stability.static_energies([s], potential="sevennet")[0]
    final, after = stability.relax(s, steps=40, potential="sevennet")
    assert after <= before + 1e-4
    assert len(final) == len(s) and final.volume < s.volume  # the strained cell shrinks back


def test_add_energies_refuses_mixed_potentials_and_fills_sevennet_voltage():
    from battgai.materials.pipeline import UniqueTracker, add_energies, check

    refs = stability.ReferencePhases(["li"], ["Li"], cif_of=str)  # CHGNet references
    cand = check(licoo2(), Conditions(working_ion="Li"), None, source="uploaded", tracker=UniqueTracker())
    with pytest.raises(ValueError, match="one potential for both"):
        add_energies([cand], refs, potential="sevennet")
    add_energies([cand], None, "Li", potential="sevennet")
    assert cand.e_per_atom == pytest.approx(stability.static_energies([cand.structure], potential="sevennet")[0])
    assert cand.row()["potential"] == "sevennet"  # the CSV says which potential made the energies
    # Static, unrelaxed CoO2 framework: the voltage is overestimated, but stays in a physical window.
    assert 3.5 < cand.voltage < 5.5  # 4.4 V here; CHGNet gives 4.2 V


def test_page_computes_energies_with_the_chosen_potential(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from battgai.core.provenance import Provenance
    from battgai.materials.pipeline import UniqueTracker, check

    monkeypatch.setattr(stability, "ENERGY_CACHE", tmp_path / "chgnet_static_energies.json")  # keep runs/ clean
    cand = check(nacl(), Conditions(), None, source="uploaded", tracker=UniqueTracker())
    at = AppTest.from_file(str(stability.REPO_ROOT / "pages" / "materials.py"), default_timeout=120)
    at.session_state["mat_cands"] = [cand]  # one valid candidate: no slider (min == max) but no crash either
    at.session_state["mat_prov"] = Provenance.now("upload", "", {"file": "nacl.cif"})
    at.run()
    at.selectbox(key="mat_potential").set_value("sevennet").run()
    next(b for b in at.button if b.label == "Compute energies").click().run()
    assert not at.exception
    assert cand.e_per_atom == pytest.approx(stability.static_energies([nacl()], potential="sevennet")[0])
    assert at.session_state["mat_prov"].settings["energy_runs"][-1]["potential"] == "SevenNet-0"


def test_chgnet_gives_nan_for_an_isolated_atom_and_energies_for_the_rest():
    # CHGNet refuses a batch holding an atom with no neighbour within 6 A; one such crystal must not sink the rest.
    gas = Structure(Lattice.cubic(20.0), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    e = stability.static_energies([nacl(), gas, nacl()])
    assert np.isfinite(e[[0, 2]]).all() and np.isnan(e[1])


@pytest.mark.parametrize("potential", ["chgnet", "sevennet"])
def test_relaxation_of_a_collapsed_cell_is_stopped_before_the_potential_runs(potential):
    # 0.5 A^3 per atom: CHGNet's 6 A neighbour lists would hold ~1,800 neighbours per atom; the guard refuses.
    squashed = Structure(Lattice.cubic(1.0), ["Li"], [[0, 0, 0]])
    with pytest.raises(stability.RelaxationError, match="collapsed"):
        stability.relax(squashed, steps=5, potential=potential)


@pytest.mark.parametrize("potential", ["chgnet", "sevennet"])
def test_relaxation_past_its_time_limit_is_stopped(potential):
    strained = nacl().copy()
    strained.scale_lattice(strained.volume * 1.15)  # far from converged: it would take more than one step
    with pytest.raises(stability.RelaxationError, match="0 s limit"):
        stability.relax(strained, steps=50, potential=potential, max_seconds=0)


def test_add_energies_keeps_a_candidate_whose_relaxation_was_stopped():
    from battgai.materials.pipeline import UniqueTracker, add_energies, check

    cand = check(nacl(), Conditions(), None, source="uploaded", tracker=UniqueTracker())
    cand.structure = Structure(Lattice.cubic(1.0), ["Li"], [[0, 0, 0]])  # valid_structure stays True
    add_energies([cand], None, relax=True)
    assert not cand.relaxed and math.isnan(cand.e_per_atom) and "collapsed" in cand.note


def test_chgnet_relaxation_through_the_guard_lowers_a_strained_cell():
    strained = nacl().copy()
    strained.scale_lattice(strained.volume * 1.15)
    before = stability.static_energies([strained])[0]
    final, after = stability.relax(strained, steps=40)
    assert after < before and final.volume < strained.volume


def test_generate_with_a_screen_keeps_the_asked_number_and_their_static_energies():
    from battgai.materials.generation.sample import load_model
    from battgai.materials.pipeline import generate

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    cands, tally = generate(load_model(), Conditions(working_ion="Li", voltage=4.5), 4, seed=0, oversample=2)
    assert len(cands) == tally.accepted == 4 and tally.screened_out == 4
    assert all(c.potential == "chgnet" and np.isfinite(c.e_per_atom) for c in cands)
    assert all("Li" in c.structure.composition for c in cands)
    with pytest.raises(ValueError, match="oversample"):
        generate(load_model(), Conditions(working_ion="Li", voltage=4.5), 4, oversample=9)


def test_cli_screen_writes_screened_candidates_and_refuses_an_unrankable_target(tmp_path):
    import csv

    from battgai.cli.generate import generate_to_dir

    n = generate_to_dir(4, "ion=Li;voltage=4.5", tmp_path / "run", batch_size=4, novelty=False, oversample=2)
    with open(tmp_path / "run" / "checks.csv") as f:
        rows = list(csv.DictReader(f))
    assert n == len(rows) == 4 and all(r["potential"] == "chgnet" for r in rows)
    with pytest.raises(SystemExit, match="cannot screen"):
        generate_to_dir(4, "band_gap=2", tmp_path / "gap", novelty=False, oversample=2)


@pytest.mark.parametrize(("potential", "element"), [("chgnet", "Am"), ("sevennet", "Am"), ("sevennet", "Po")])
def test_an_element_the_potential_lacks_gives_no_energy_and_leaves_its_batch_alone(potential, element):
    # The element tokens reach Z 103 (a hot element temperature writes Am); CHGNet failed the whole batch on one.
    odd = Structure(Lattice.cubic(5.0), [element, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert stability.uncovered_elements(odd, potential) == [element]
    assert stability.uncovered_elements(nacl(), potential) == []
    e = stability.static_energies([nacl(), odd, nacl()], potential=potential)
    assert np.isfinite(e[[0, 2]]).all() and np.isnan(e[1])
    with pytest.raises(stability.RelaxationError, match=f"no parameters for {element}"):
        stability.relax(odd, steps=5, potential=potential)


def test_chgnet_covers_polonium_that_sevennet_lacks():
    po = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    assert stability.uncovered_elements(po) == [] and np.isfinite(stability.static_energies([po])[0])


def test_add_energies_notes_a_candidate_with_an_element_beyond_the_potential():
    from battgai.materials.pipeline import UniqueTracker, add_energies, check

    amo = Structure(Lattice.cubic(5.0), ["Am", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cands = [check(s, Conditions(), None, source="uploaded", tracker=UniqueTracker()) for s in (amo, nacl())]
    add_energies(cands, None, ion="Li")
    assert math.isnan(cands[0].e_per_atom)
    assert cands[0].note.startswith("no energy: CHGNet 0.3 has no parameters for Am")
    assert np.isfinite(cands[1].e_per_atom)


def test_page_computes_energies_past_an_uploaded_crystal_beyond_the_potential(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from battgai.core.provenance import Provenance
    from battgai.materials.pipeline import UniqueTracker, check

    monkeypatch.setattr(stability, "ENERGY_CACHE", tmp_path / "chgnet_static_energies.json")  # keep runs/ clean
    amo = Structure(Lattice.cubic(5.0), ["Am", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cands = [check(s, Conditions(), None, source="uploaded", tracker=UniqueTracker()) for s in (amo, nacl())]
    at = AppTest.from_file(str(stability.REPO_ROOT / "pages" / "materials.py"), default_timeout=120)
    at.session_state["mat_cands"] = cands
    at.session_state["mat_prov"] = Provenance.now("upload", "", {"file": "amo.cif"})
    at.run()
    next(b for b in at.button if b.label == "Compute energies").click().run()
    assert not at.exception
    assert "no parameters for Am" in cands[0].note and np.isfinite(cands[1].e_per_atom)
    assert any("1 of 2 candidates got no energy" in w.value and "AmO: no energy" in w.value for w in at.warning)
