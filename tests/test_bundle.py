"""The bundled known-phase index and reference energies: a fresh clone judges newness and E_hull."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from battgai.core import data
from battgai.materials.checks import bundle, references
from battgai.materials.checks.stability import ReferencePhases


@pytest.fixture
def fresh_bundle():
    bundle.load_known_phases.cache_clear()
    bundle.load_references.cache_clear()
    yield
    bundle.load_known_phases.cache_clear()
    bundle.load_references.cache_clear()


def _shared_or_skip():
    try:
        data.dataset_path("mp_20_cif_only")
    except data.DataNotFound as e:
        pytest.skip(str(e))


def test_the_bundle_is_small_and_matches_its_manifest(fresh_bundle):
    m = bundle.describe()
    index, refs = bundle.load_known_phases(), bundle.load_references()
    entry = m["files"][bundle.KNOWN_FILE]
    assert index.n_structures == entry["structures"] > 45_000
    assert len(index) == entry["formulas"] and index.sources() == entry["sources"]
    assert index.training().n_structures == entry["training"] > 25_000
    assert len(refs.ids) == m["files"][bundle.REFERENCES_FILE]["phases"] > 25_000
    assert refs.potential == "chgnet" and np.isfinite(refs.energies).mean() > 0.99
    assert sum(f["bytes"] for f in m["files"].values()) < 12e6


def test_an_altered_bundle_file_is_refused(tmp_path, fresh_bundle):
    folder = tmp_path / "bundle"
    shutil.copytree(bundle.BUNDLE_DIR, folder)
    raw = bytearray((folder / bundle.REFERENCES_FILE).read_bytes())
    raw[len(raw) // 2] ^= 1
    (folder / bundle.REFERENCES_FILE).write_bytes(bytes(raw))
    with pytest.raises(bundle.BundleError, match="sha256"):
        bundle.load_references(folder)
    (folder / bundle.KNOWN_FILE).unlink()
    with pytest.raises(bundle.BundleError, match="missing"):
        bundle.load_known_phases(folder)


@pytest.mark.usefixtures("no_shared_data", "fresh_bundle")
def test_without_shared_data_novelty_and_e_hull_come_from_the_bundle():
    from battgai.materials.checks.validate import is_novel

    known, source = references.training_structures()
    assert isinstance(known, bundle.KnownPhases) and "bundled index" in source
    li2o = known["Li2O"][0]
    assert not is_novel(li2o, known)  # a training structure is not novel
    moved = li2o.copy()
    moved.translate_sites([1], [0.3, -0.3, 0])  # one Li off its site: no longer antifluorite
    assert is_novel(moved, known)
    refs, source = references.reference_phases("chgnet")
    assert isinstance(refs, ReferencePhases) and "bundled MP-20 references" in source
    e_li2o = refs.cache.values[refs.ids[[str(c.reduced_formula) for c in refs.comps].index("Li2O")]]
    assert refs.hull(li2o.composition, e_li2o).e_above_hull == pytest.approx(0, abs=0.05)
    assert refs.hull(li2o.composition, e_li2o + 0.3).e_above_hull > 0.25
    assert math.isnan(refs.hull("RaF2", -1.0).e_above_hull)  # Ra is in no MP-20 phase: not covered, not guessed
    none, why = references.reference_phases("sevennet")
    assert none is None and "CHGNet" in why


def test_the_bundled_index_holds_the_shared_structures(fresh_bundle):
    _shared_or_skip()
    from battgai.materials.checks.validate import _parse_cif
    from battgai.materials.training.corpus import training_cifs_by_formula

    shared, index = training_cifs_by_formula(), bundle.load_known_phases().training()
    assert set(index) == set(shared)
    rng = np.random.default_rng(0)
    for formula in rng.choice(list(shared), 200, replace=False):
        # The shared path lists an electrode structure that is also an MP-20 row twice; the index once.
        parsed = [_parse_cif(cif) for cif in shared[formula]]
        for s in index[formula]:
            # float32 in the bundle: the same sites, cell and order to 1e-5 (five orders below StructureMatcher's
            # tolerances), never a different structure.
            assert any([x.specie.symbol for x in s] == [x.specie.symbol for x in t]
                       and np.allclose(s.lattice.matrix, t.lattice.matrix, rtol=0, atol=1e-4)
                       and np.allclose(s.frac_coords, t.frac_coords, rtol=0, atol=1e-5) for t in parsed)
        assert len(index[formula]) <= len(parsed)


def test_the_known_phases_hold_every_split_and_name_a_match(fresh_bundle):
    from battgai.materials.checks.validate import is_novel, known_match

    known = bundle.load_known_phases()
    casnrh2 = known["CaSnRh2"][0]  # a held-out MP-20 test crystal a campaign once counted as novel
    assert known.match(casnrh2) == ("mp-861935", "mp20-test")
    assert known_match(casnrh2, known) == "mp-861935 (mp20-test)"
    assert "CaSnRh2" not in known.training() and is_novel(casnrh2, known.training())
    assert not is_novel(casnrh2, known)
    assert {"mpts52-test", "electrodes", "mp20-train"} <= set(known.sources())


def test_the_bundled_energies_are_the_ones_chgnet_gives_on_the_shared_structures(fresh_bundle):
    _shared_or_skip()
    from battgai.materials.checks.stability import static_energies
    from battgai.materials.checks.validate import _parse_cif
    from battgai.materials.training.corpus import mp20_frame

    refs = bundle.load_references()
    energy = dict(zip(refs.ids, refs.energies, strict=True))
    df = mp20_frame().sample(24, random_state=1)
    computed = static_energies([_parse_cif(c) for c in df.cif])
    assert np.allclose(computed, [energy[m] for m in df.material_id], atol=1e-6, equal_nan=True)


@pytest.mark.usefixtures("no_shared_data", "fresh_bundle")
def test_a_fresh_clone_page_shows_novelty_and_e_hull_and_names_what_is_not_covered(tmp_path, monkeypatch):
    from pymatgen.core import Lattice, Structure
    from streamlit.testing.v1 import AppTest

    from battgai.materials.checks import stability
    from battgai.materials.generation.sample import Conditions
    from battgai.materials.pipeline import UniqueTracker, check

    monkeypatch.setattr(stability, "ENERGY_CACHE", tmp_path / "chgnet_static_energies.json")  # keep runs/ clean
    at = AppTest.from_file(str(stability.REPO_ROOT / "pages" / "materials.py"), default_timeout=300).run()
    at.slider[0].set_value(12)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("known phases (MP-20 all splits, MPTS-52, electrodes)" in c.value for c in at.caption)
    cands = at.session_state["mat_cands"]
    assert all(c.novel is not None for c in cands)
    # Radium is in no MP-20 phase: its fluorite gets an energy but no E_hull, and the page says why.
    raf2 = Structure(Lattice.cubic(6.4), ["Ra"] * 4 + ["F"] * 8,
                     [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
                     + [[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)])
    cands.insert(0, check(raf2, Conditions(), None, source="uploaded", tracker=UniqueTracker()))
    at.run()
    at.slider(key="mat_max_e").set_value(sum(c.valid_structure for c in cands)).run()
    next(b for b in at.button if b.label == "Compute energies").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("E_hull vs the bundled MP-20 references" in c.value for c in at.caption)
    done = [c for c in cands if c.valid_structure and math.isfinite(c.e_per_atom)]
    assert len(done) >= 10
    assert [c.structure.composition.reduced_formula for c in done if math.isnan(c.e_above_hull)] == ["RaF2"]
    assert any("no E_hull" in i.value and "RaF2: no elemental MP-20 phase for Ra" in i.value for i in at.info)
