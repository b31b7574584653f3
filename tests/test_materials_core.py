"""Materials backend: tokenizer, builder, constrained sampler, checks, battery metrics, hull maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from battgai.core.demo import licoo2
from battgai.materials.checks import battery, validate
from battgai.materials.generation import build
from battgai.materials.generation import tokenizer as tk
from battgai.materials.generation.sample import Conditions, check_conditions, parse_conditions
from tests.conftest import requires_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def tiny_model():
    """An untrained GPT: enough to test that masks enforce every constraint whatever the logits say."""
    import torch

    from battgai.materials.generation.model import GPT, GPTConfig
    from battgai.materials.generation.sample import LoadedModel

    torch.manual_seed(0)
    model = GPT(GPTConfig(tk.VOCAB_SIZE, tk.SEQ_LEN - 1, n_layer=1, n_head=2, n_embd=32)).eval()
    return LoadedModel(model, "untrained", "0" * 64)


@pytest.mark.parametrize("make", [nacl, licoo2])
def test_tokenize_roundtrip_matches(make):
    s = make()
    wc = tk.from_structure(s)
    tokens = tk.encode(wc, {"band_gap": 1.5})
    assert tokens.shape == (tk.SEQ_LEN,)
    back = build.to_structure(tk.decode(tokens))
    assert validate.matches(s, back)
    assert validate.spacegroup_found(back) == validate.spacegroup_found(s)


@pytest.mark.parametrize("make", [nacl, licoo2])
def test_equivalent_forms_are_distinct_sequences_of_the_same_crystal(make):
    s = make()
    forms = tk.equivalent_forms(s)
    assert forms[0] == tk.from_structure(s)
    assert len({tuple(tk.encode(f)) for f in forms}) == len(forms) >= 2
    for form in forms:
        assert validate.matches(s, build.to_structure(form))


def test_nacl_equivalent_forms_swap_4a_and_4b():
    letters = {tuple((site.element, site.letter) for site in f.sites) for f in tk.equivalent_forms(nacl())}
    assert {("Na", "a"), ("Cl", "b")} <= {pair for form in letters for pair in form}
    assert {("Na", "b"), ("Cl", "a")} <= {pair for form in letters for pair in form}


def test_nacl_is_one_token_site_each():
    wc = tk.from_structure(nacl())
    assert wc.spacegroup == 225
    assert sorted(site.element for site in wc.sites) == ["Cl", "Na"]
    assert wc.n_atoms == 2  # primitive cell


def test_property_tokens_bin_and_unknown():
    start, size = tk.LAYOUT["e_above_hull"]
    assert tk.property_token("e_above_hull", 0.0) == start
    assert tk.property_token("e_above_hull", 0.5) == start + len(tk.EH_EDGES)
    assert tk.property_token("e_above_hull", None) == start + size - 1
    assert tk.property_token("e_above_hull", math.nan) == start + size - 1


def test_decode_rejects_garbage():
    with pytest.raises(tk.TokenizeError):
        tk.decode(np.zeros(tk.SEQ_LEN, dtype=int))


def test_lattice_out_of_range_is_a_tokenize_error():
    wc = tk.WyckoffCrystal(225, (200.0, 200.0, 200.0, 90, 90, 90), (tk.Site("a", "Na", (0, 0, 0)),))
    with pytest.raises(tk.TokenizeError, match="lattice length"):
        tk.encode(wc)


def test_build_refuses_unknown_wyckoff_letter():
    wc = tk.WyckoffCrystal(1, (3, 3, 3, 90, 90, 90), (tk.Site("z", "Na", (0, 0, 0)),))
    with pytest.raises(build.BuildError):
        build.to_structure(wc)


def test_symmetrize_lattice_cubic_and_hexagonal():
    assert build.symmetrize_lattice(225, (4.0, 4.2, 4.4, 80, 95, 100)) == (4.2, 4.2, 4.2, 90.0, 90.0, 90.0)
    assert build.symmetrize_lattice(194, (3.0, 3.2, 5.0, 80, 95, 100))[3:] == (90.0, 90.0, 120.0)
    many = build.symmetrize_lattice(14, np.array([[3.0, 3.2, 5.0, 80, 95, 100]] * 2))  # arrays go row by row
    assert many.shape == (2, 6) and many[1].tolist() == [3.0, 3.2, 5.0, 90.0, 95.0, 90.0]


def test_parse_conditions_and_errors():
    c = parse_conditions("allowed=Li,Fe,P,O;required=Li;sg=62,63;natoms=14;voltage=3.5")
    assert c.allowed_elements == ("Li", "Fe", "P", "O") and c.spacegroups == (62, 63) and c.voltage == 3.5
    assert len(parse_conditions("system=cubic").spacegroups) == 36
    with pytest.raises(ValueError, match="unknown condition"):
        parse_conditions("colour=blue")


@pytest.mark.parametrize("text, fragment", [
    ("allowed=Li,O;required=Fe", "not in the allowed set"),
    ("allowed=Ne,F;required=Ne,F", "charge-neutral"),
    ("required=Na;sg=229;natoms=2", "No asked space group"),
    ("natoms=30", "1..20"),
    ("allowed=Xx", "not an element"),
    ("required=Am,O", "Am is in none of the training crystals"),
    ("allowed=Li,Ar", "Ar is in none of the training crystals"),
    ("allowed=Og,F", "Og is in none of the training crystals"),
    ("required=Li,Na,K;natoms=2", "cannot fit"),
])
def test_impossible_conditions_are_explained(text, fragment):
    problems = check_conditions(parse_conditions(text))
    assert any(fragment in p for p in problems), problems


def test_possible_conditions_pass():
    assert check_conditions(parse_conditions("allowed=Li,Co,O;required=Li;natoms=4")) == []
    assert check_conditions(Conditions()) == []


def test_masks_enforce_constraints_on_untrained_model(tiny_model):
    from battgai.materials.generation.sample import sample_tokens

    c = Conditions(allowed_elements=("Li", "Fe", "P", "O"), required_elements=("Li", "O"), spacegroups=(62,),
                   n_atoms=12)
    tokens, ok = sample_tokens(tiny_model, c, 24, seed=1)
    assert ok.mean() > 0.8
    for t in tokens[ok]:
        wc = tk.decode(t)
        els = {s.element for s in wc.sites}
        assert {"Li", "O"} <= els <= {"Li", "Fe", "P", "O"}
        assert wc.spacegroup == 62
        assert wc.n_atoms == 12


def test_validity_masks_make_random_logits_give_more_valid_neutral_crystals(tiny_model):
    # Untrained logits are arbitrary, so whatever comes out valid is the masks' doing.
    from battgai.materials.generation.sample import sample_tokens
    from battgai.materials.pipeline import build_all

    c = Conditions(allowed_elements=("Li", "Fe", "Mn", "P", "O"))
    counts = {}
    for masks in (True, False):
        built = [x[0] for x in build_all(*sample_tokens(tiny_model, c, 32, seed=1, validity_masks=masks)) if x]
        counts[masks] = (len(built), sum(validate.structural_valid(s) for s in built),
                         sum(validate.smact_valid(s.composition.element_composition.as_dict()) for s in built))
    # (The masks cannot rescue every random crystal: separating some atoms would need a gas-like cell.)
    assert counts[True][0] == counts[False][0] == 32
    assert counts[True][1] > counts[False][1]  # atoms >= 0.5 A apart
    assert counts[True][2] > counts[False][2]  # charge neutral


def test_far_enough_is_exact_for_a_known_pair_and_bounds_free_angles():
    from battgai.materials.generation.sample import _far_enough, _metric

    frac = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    cubes = np.array([[a, a, a, 90.0, 90.0, 90.0] for a in (5.0, 9.9, 10.1, 20.0)])
    assert _far_enough(frac, _metric(cubes), 0.5).tolist() == [False, False, True, True]  # d = 0.05 a
    # Two atoms apart along a and c: with beta still free the largest distance is (a + c) * 0.05.
    frac = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.05]])
    cells = np.array([[4.0, 4.0, 4.0, 0.0, 0.0, 0.0], [6.0, 4.0, 6.0, 0.0, 0.0, 0.0]])
    assert _far_enough(frac, _metric(cells), 0.5, free_angles=(3, 4, 5)).tolist() == [False, True]


def _one_sequence(sg: int, frac, lattice=()):
    from battgai.materials.generation.sample import _Masks

    m = _Masks(Conditions(), 1)
    m.sg[0], m.atoms[0], m.lattice[0] = sg, np.array(frac, dtype=float), list(lattice)
    return m


def test_lookahead_keeps_lengths_some_cell_within_the_volume_cap_completes():
    # Two atoms 0.2 a apart in a primitive cube need a >= 2.5 A, and the volume cap (75 A^3/atom) a <= 5.3 A.
    # The cube's edge is the mean of the three length tokens, so a first length of 4 A can be completed,
    # one of 60 A cannot (even with the two shortest lengths to come the cell is too big).
    m = _one_sequence(221, [[0, 0, 0], [0.2, 0, 0]])
    assert m.completes(0, 6, tk._length_token(4.0)) and not m.completes(0, 6, tk._length_token(60.0))
    # 0.05 a apart would need a >= 10 A: no length completes, whatever comes next.
    m = _one_sequence(221, [[0, 0, 0], [0.05, 0, 0]])
    assert not any(m.completes(0, 6, t) for t in range(*np.add(tk.LAYOUT["length"], (0, tk.LAYOUT["length"][0]))))
    # Orthorhombic, a and b drawn: c must be long enough for the pair apart along c, short enough for the cap.
    m = _one_sequence(47, [[0, 0, 0], [0, 0, 0.25]], lattice=(3.0,))
    assert m.completes(0, 7, tk._length_token(3.0))  # c of 2 .. 16.7 A fits: both conditions can hold
    m = _one_sequence(47, [[0, 0, 0], [0, 0, 0.02]], lattice=(3.0,))
    assert not m.completes(0, 7, tk._length_token(3.0))  # c >= 25 A would be needed, the cap allows 16.7 A


def test_lookahead_over_the_angles_to_come():
    # Monoclinic, a b c drawn: two atoms 0.1 a + 0.1 c apart are >= 0.5 A apart for beta up to ~103 degrees.
    m = _one_sequence(10, [[0, 0, 0], [0.1, 0, 0.1]], lattice=(4.0, 4.0))
    assert m.completes(0, 8, tk._length_token(4.0))
    m = _one_sequence(10, [[0, 0, 0], [0.01, 0, 0.01]], lattice=(4.0, 4.0))
    assert not m.completes(0, 8, tk._length_token(4.0))  # 0.06 A apart at most, whatever beta


def test_angles_outside_the_allowed_range_are_masked():
    from battgai.materials.generation.sample import ANGLE_RANGE

    m = _one_sequence(1, [[0, 0, 0], [0.5, 0.5, 0.5]], lattice=(4.0, 4.0, 4.0))
    s, size = tk.LAYOUT["angle"]
    allowed = np.flatnonzero(m.mask(0, 9)[s: s + size]) + 0.5
    assert allowed.min() >= ANGLE_RANGE[0] and allowed.max() < ANGLE_RANGE[1]


def test_redraw_samples_among_values_that_complete_and_else_keeps_the_first():
    import torch

    from battgai.materials.generation.sample import _redraw

    class Only:
        def __init__(self, good):
            self.good = good

        def completes(self, i, phase, tok):
            return tok in self.good

    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    gen = torch.Generator().manual_seed(0)
    assert {_redraw(Only({2}), 0, 6, probs, 0, gen) for _ in range(5)} == {2}
    assert {_redraw(Only({1, 2}), 0, 6, probs, 0, gen) for _ in range(40)} == {1, 2}
    assert _redraw(Only({3}), 0, 6, probs, 1, gen) == 1  # token 3 has no probability: nothing completes


def test_sampling_is_reproducible(tiny_model):
    from battgai.materials.generation.sample import sample_tokens

    a, _ = sample_tokens(tiny_model, Conditions(), 4, seed=3)
    b, _ = sample_tokens(tiny_model, Conditions(), 4, seed=3)
    c, _ = sample_tokens(tiny_model, Conditions(), 4, seed=4)
    assert (a == b).all() and not (a == c).all()


def test_sample_refuses_impossible_conditions(tiny_model):
    from battgai.materials.generation.sample import sample_tokens

    with pytest.raises(ValueError, match="allowed set"):
        sample_tokens(tiny_model, parse_conditions("allowed=Li,O;required=Fe"), 2)


def test_structural_validity():
    assert validate.structural_valid(nacl())
    bad = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert validate.min_distance(bad) == pytest.approx(0.2)
    assert not validate.structural_valid(bad)


def test_contact_ratio_uses_the_pair_radii():
    # Na-Cl 2.82 A over Slater radii 1.80 + 1.00 A.
    assert validate.contact_ratio(nacl()) == pytest.approx(2.82 / 2.80, abs=1e-3)
    squeezed = nacl()
    squeezed.scale_lattice(nacl().volume * 0.55**3)  # still > 0.5 A apart: valid, but overlapping
    assert validate.structural_valid(squeezed)
    assert validate.contact_ratio(squeezed) < validate.MIN_CONTACT_RATIO
    assert validate.contact_ratio(Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]])) == math.inf


def test_smact_examples():
    assert validate.smact_valid({"Li": 1, "Co": 1, "O": 2})
    assert validate.smact_valid({"Na": 2, "Cl": 2})  # reduced to NaCl
    assert not validate.smact_valid({"Na": 1, "F": 2})
    assert validate.smact_valid({"Fe": 1, "Ni": 3})  # alloys pass, as in CDVAE


def test_uniqueness_and_novelty():
    a, b = nacl(), nacl()
    b.perturb(0.01, 0.01)
    other = Structure(Lattice.cubic(3.4), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert validate.unique_mask([a, b, other]) == [True, False, True]
    known = {"NaCl": [nacl().to(fmt="cif")]}
    assert not validate.is_novel(b, known)
    assert validate.is_novel(other, known)
    assert validate.nearest_known(b, known) is not None


def test_capacity_and_voltage_formulas():
    assert battery.capacity_grav("LiCoO2", "Li") == pytest.approx(273.8, abs=0.2)
    assert battery.capacity_grav("CoO2", "Li") == 0.0
    assert battery.capacity_grav("MgMo3S4", "Mg") == pytest.approx(2 * 96485.33 / 3.6 / 440.4, rel=1e-3)
    # LiX at -5 eV/atom, X at -3 eV/atom, Li metal -2 eV/atom: dE = -10 - (-3) - (-2) = -5 eV -> 5 V.
    v = battery.average_voltage("LiCoO2", -5.0 * 4 / 4, "CoO2", -3.0 * 3 / 3, "Li", -2.0)
    assert v == pytest.approx(-(-5.0 * 4 - (-3.0 * 3) - (-2.0)))
    with pytest.raises(ValueError, match="more Li"):
        battery.average_voltage("CoO2", -3, "LiCoO2", -5, "Li", -2)
    with pytest.raises(ValueError, match="working ion"):
        battery.capacity_grav("LiCoO2", "Xe")


def test_remove_ion_keeps_framework():
    f = battery.remove_ion(licoo2(), "Li")
    assert f.composition.reduced_formula == "CoO2"


def test_hull_maths_with_given_energies(tmp_path):
    from battgai.materials.checks.stability import EnergyCache, ReferencePhases

    cache = EnergyCache(tmp_path / "e.json")
    cache.values = {"li": -1.9, "o": -4.9, "li2o": -4.8, "li2o2": -4.5}
    refs = ReferencePhases(["li", "o", "li2o", "li2o2"], ["Li", "O2", "Li2O", "Li2O2"],
                           cif_of=lambda i: pytest.fail("no CHGNet call expected"), cache=cache)
    on = refs.hull("Li2O", -4.8)
    assert on.e_above_hull == pytest.approx(0.0, abs=1e-6)
    assert on.formation_energy == pytest.approx(-4.8 - (2 / 3 * -1.9 + 1 / 3 * -4.9))
    above = refs.hull("Li2O", -4.6)
    assert above.e_above_hull == pytest.approx(0.2, abs=1e-6)
    missing = refs.hull("LiF", -4.0)
    assert math.isnan(missing.e_above_hull) and "F" in missing.note


def test_check_uploaded_structure():
    from battgai.materials.pipeline import UniqueTracker, check

    tracker = UniqueTracker()
    c = check(licoo2(), Conditions(working_ion="Li"), {"LiCoO2": [licoo2()]}, source="uploaded", tracker=tracker)
    assert c.valid_structure and c.valid_smact and c.obeys_elements and c.unique
    assert c.novel is False
    assert c.spacegroup_found == 166
    assert c.capacity == pytest.approx(273.8, abs=0.2)
    again = check(licoo2(), Conditions(), None, tracker=tracker)
    assert not again.unique and again.novel is None
    assert c.contact_ratio > validate.MIN_CONTACT_RATIO
    assert set(c.row()) >= {"formula", "contact_ratio", "e_above_hull", "voltage", "capacity_mAh_g", "potential"}


def test_training_loop_fits_two_crystals():
    from battgai.materials.training.train import TrainConfig, make_batch, train

    tokens = np.stack([tk.encode(tk.from_structure(s)) for s in (nacl(), licoo2())])
    props = np.full((2, tk.N_COND), np.nan)
    _x, y = make_batch(tokens, np.isfinite(props), np.random.default_rng(0), 0.0)
    assert (y[:, : tk.N_COND] == -1).all()  # condition tokens are inputs, never targets
    cfg = TrainConfig(minutes=1.0, max_steps=30, batch_size=4, lr=1e-2, warmup=3, eval_every=30, n_layer=1,
                      n_head=2, n_embd=32)
    _model, best, steps = train(cfg, tokens, props, tokens, log=lambda *_: None)
    assert steps == 30
    assert best < 3.0  # nats per token; an untrained model starts near ln(vocab) ~ 6.8


def test_augmented_training_draws_each_crystals_own_forms():
    from battgai.materials.training.corpus import Alternatives
    from battgai.materials.training.train import TrainConfig, train

    forms = [[tk.encode(f) for f in tk.equivalent_forms(s)] for s in (nacl(), licoo2())]
    alt = Alternatives(np.array(["nacl", "lco"]), np.stack(forms[0] + forms[1]),
                       np.array([0, len(forms[0])]), np.array([len(forms[0]), len(forms[1])]))
    flipped = alt.align(np.array(["lco", "nacl"]))
    drawn = {tuple(t) for t in flipped.draw(np.zeros(200, dtype=np.int64), np.random.default_rng(0))}
    assert drawn == {tuple(t) for t in forms[1]}  # every form of LiCoO2 comes up, nothing of NaCl
    tokens = np.stack([forms[0][0], forms[1][0]])
    props = np.full((2, tk.N_COND), np.nan)
    cfg = TrainConfig(minutes=1.0, max_steps=5, batch_size=4, eval_every=5, n_layer=1, n_head=2, n_embd=32,
                      augment=True)
    with pytest.raises(ValueError, match="alternatives"):
        train(cfg, tokens, props, tokens, log=lambda *_: None)
    _model, _best, steps = train(cfg, tokens, props, tokens, log=lambda *_: None, alternatives=alt)
    assert steps == 5


def test_train_cli_records_its_settings_in_the_card(tmp_path, monkeypatch):
    from battgai.core import registry
    from battgai.materials.training import corpus, train

    tokens = np.stack([tk.encode(tk.from_structure(s)) for s in (nacl(), licoo2())])
    tiny = corpus.Corpus(np.array(["a", "b"]), np.array(["NaCl", "LiCoO2"]), np.array(["train", "heldout"]),
                         tokens, np.full((2, tk.N_COND), np.nan), 0, {})
    monkeypatch.setattr(corpus, "load_corpus", lambda: tiny)
    monkeypatch.setenv("BATTGAI_WEIGHTS_DIR", str(tmp_path))
    train.main(["--name", "tiny", "--minutes", "1", "--max-steps", "4", "--n-layer", "1", "--n-head", "2",
                "--n-embd", "32", "--dropout", "0.1", "--weight-decay", "0.2"])
    card = registry.load_card("tiny")
    assert card.config["dropout"] == 0.1 and card.config["n_layer"] == 1
    # Retraining from the card's command must rebuild the same architecture and schedule.
    assert card.retrain_command == ("python -m battgai.train materials --name tiny --minutes 1 --n-layer 1 "
                                    "--n-head 2 --n-embd 32 --dropout 0.1 --weight-decay 0.2 --max-steps 4")
    assert "on 1 CPU thread, batch 64, dropout 0.1, weight decay 0.2." in card.notes
    # Continuing from those weights on equivalent forms: the card names the start and the augmentation.
    alt = corpus.Alternatives(tiny.ids[:1], tokens[:1], np.array([0]), np.array([1]))
    monkeypatch.setattr(corpus, "load_alternatives", lambda: alt)
    train.main(["--name", "tiny2", "--minutes", "1", "--max-steps", "2", "--init", "tiny", "--augment"])
    card2 = registry.load_card("tiny2")
    assert card2.config["n_embd"] == 32
    assert card2.retrain_command.endswith("--max-steps 2 --augment --init tiny")
    assert f", from tiny (sha256 {card.sha256[:12]}), on random equivalent Wyckoff forms" in card2.notes


def test_conditions_around_uploaded_structure():
    from battgai.materials.generation.sample import conditions_around

    c = conditions_around(licoo2(), "Li")
    assert set(c.allowed_elements) == {"Li", "Co", "O"}
    assert c.spacegroups == (166,) and c.n_atoms == 4 and c.working_ion == "Li"
    assert check_conditions(c) == []


def test_coverage_counts_both_cutoffs_with_cdvae_scaling():
    from battgai.bench.materials import _cdvae_comp_scaler, coverage

    mu, sd = _cdvae_comp_scaler()
    assert mu.shape == sd.shape == (132,) and (sd > 0).all()
    far = mu + 11 * sd / np.sqrt(132)  # scaled distance 11 from the mean: beyond the cutoff of 10
    ref = (np.array([[0.0, 0.0], [1.0, 1.0]]), np.stack([mu, far]))
    gen = (np.array([[0.0, 0.1], [5.0, 5.0], [np.nan, np.nan]]), np.stack([mu, mu, mu]))
    cov = coverage(gen, ref)
    # Only reference 0 has a generated structure within 0.4 (structure) and 10 (composition); the
    # generated structure without a fingerprint still counts in COV-P's denominator, as in CDVAE.
    assert cov == {"cov_r": 0.5, "cov_p": pytest.approx(1 / 3)}
    gen_close = (np.array([[1.0, 1.0]]), np.stack([mu + 9 * sd / np.sqrt(132)]))
    assert coverage(gen_close, ref)["cov_r"] == 0.5  # matches reference 1 on both counts


@requires_data("mp_20_cif_only")
def test_real_coverage_draws_training_crystals_and_scores_them_like_generated_ones():
    from types import SimpleNamespace

    from battgai.bench.materials import crystal_properties, fingerprints, real_coverage
    from battgai.materials.training.corpus import mp20_frame

    df = mp20_frame().head(6)
    corpus = SimpleNamespace(ids=df.material_id.to_numpy(), split=np.array(["train"] * 4 + ["heldout"] * 2))
    train = [validate._parse_cif(c) for c in df.cif[:4]]
    # Only training crystals are drawn: against themselves as references coverage is complete, distances zero.
    assert real_coverage(corpus, 4, 0, fingerprints(train), crystal_properties(train)) == {
        "cov_r": 1.0, "cov_p": 1.0, "wdist_density": 0.0, "wdist_num_elems": 0.0}
    with pytest.raises(ValueError):  # more than the training split holds
        real_coverage(corpus, 5, 0, fingerprints(train), crystal_properties(train))


def test_distribution_distances_are_wasserstein_distances_of_density_and_element_count():
    from battgai.bench.materials import crystal_properties, distribution_distances

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cu = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    props = crystal_properties([nacl, None, cu])  # a missing structure is skipped
    assert props[:, 1].tolist() == [2, 1]
    assert props[0, 0] == pytest.approx(nacl.density)
    d = distribution_distances(props[:1], props)
    # Moving half the mass from NaCl's values to Cu's: half the gap on each axis.
    assert d["wdist_density"] == pytest.approx(abs(cu.density - nacl.density) / 2)
    assert d["wdist_num_elems"] == pytest.approx(0.5)


def test_the_real_crystal_ceiling_joins_the_report_only_for_the_same_references(tmp_path, monkeypatch):
    import json

    from battgai.bench import materials as bench

    monkeypatch.setattr(bench, "REAL", tmp_path / "coverage_real.json")
    monkeypatch.setattr(bench, "CURVE", tmp_path / "coverage_curve.json")
    bench.REAL.write_text(json.dumps({"n": 1000, "seed": 0, "ref": 2995, "cov_r": 0.968, "cov_p": 0.992}))
    r = {"sha256": "x", "version": "0", "cov_ref": 2995}
    assert bench._with_curve(r)["coverage_real"]["cov_p"] == 0.992
    assert "coverage_real" not in bench._with_curve({**r, "cov_ref": 500})


def test_a_side_run_saves_its_file_and_stops_and_a_trial_only_prints_it(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from battgai.bench import materials as bench
    from battgai.materials.generation import sample
    from battgai.materials.training import corpus

    for name in ("RESULTS", "CURVE"):
        monkeypatch.setattr(bench, name, tmp_path / f"{name}.json")
    monkeypatch.setattr(corpus, "load_corpus", lambda: None)
    monkeypatch.setattr(bench, "heldout_reference", lambda c, n, seed: (np.zeros((2, 2)), np.zeros((2, 3))))
    monkeypatch.setattr(sample, "load_model", lambda name: SimpleNamespace(name=name, sha256="x"))
    monkeypatch.setattr(bench, "coverage_curve", lambda lm, sizes, seed, ref: {str(n): {"cov_r": 0.5} for n in sizes})

    def full_run(*args, **kwargs):
        raise AssertionError("a side run must not start the full benchmark")

    monkeypatch.setattr(bench, "sample_methods", full_run)
    bench.main(["--cov-curve", "10", "--no-write"])  # a trial: printed, nothing saved, no table
    out = capsys.readouterr().out
    assert '"cov_r": 0.5' in out and "RESULTS.json" not in out
    assert not bench.CURVE.exists()
    bench.main(["--cov-curve", "10"])
    assert json.loads(bench.CURVE.read_text())["cov"] == {"10": {"cov_r": 0.5}}
    assert "no RESULTS.json yet" in capsys.readouterr().out


def test_a_temperature_trial_prints_its_run_alone_and_leaves_the_saved_runs(tmp_path, monkeypatch, capsys):
    import json
    from types import SimpleNamespace

    from battgai.bench import materials as bench
    from battgai.materials.checks import stability
    from battgai.materials.generation import sample
    from battgai.materials.training import corpus

    for name in ("RESULTS", "TEMPERATURE"):
        monkeypatch.setattr(bench, name, tmp_path / f"{name}.json")
    monkeypatch.setattr(corpus, "load_corpus", lambda: None)
    monkeypatch.setattr(corpus, "training_cifs_by_formula", lambda: {})
    monkeypatch.setattr(stability.ReferencePhases, "from_mp20", classmethod(lambda cls: None))
    monkeypatch.setattr(bench, "heldout_reference", lambda c, n, seed: (np.zeros((2, 2)), np.zeros((2, 3))))
    monkeypatch.setattr(bench, "heldout_properties", lambda c, n, seed: np.zeros((2, 2)))
    monkeypatch.setattr(sample, "load_model", lambda name: SimpleNamespace(name=name, sha256="x"))
    monkeypatch.setattr(bench, "at_temperature", lambda lm, n, seed, t, e, *rest: {"temperature": t,
                                                                                   "element_temperature": e, "n": n})
    saved = {"model": "materials_gpt", "sha256": "x", "version": bench.__version__, "seed": 0, "ref": 2,
             "runs": [{"temperature": 1.2, "element_temperature": 1.0, "n": 1000}]}
    bench.TEMPERATURE.write_text(json.dumps(saved))
    bench.main(["--element-temperature", "1.4", "--no-write"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["runs"] == [{"temperature": 1.0, "element_temperature": 1.4, "n": 1000}]
    assert json.loads(bench.TEMPERATURE.read_text()) == saved


def test_the_contact_check_joins_the_report_only_for_the_same_weights_and_sampler(tmp_path, monkeypatch):
    import json

    from battgai.bench import materials as bench

    for name in ("REAL", "CURVE", "TEMPERATURE", "CONTACT", "NOVEL_ONLY"):
        monkeypatch.setattr(bench, name, tmp_path / f"{name}.json")
    bench.CONTACT.write_text(json.dumps({"sha256": "x", "version": "0", "n_sampled": 10, "n": 9, "groups": {}}))
    r = {"sha256": "x", "version": "0", "cov_ref": 2995}
    assert bench._with_curve(r)["contact_check"]["n"] == 9
    assert "contact_check" not in bench._with_curve({**r, "version": "1"})
    assert "contact_check" not in bench._with_curve({**r, "sha256": "y"})


def test_the_novel_only_comparison_joins_the_report_only_for_the_same_weights_and_references(tmp_path, monkeypatch):
    import json

    from battgai.bench import materials as bench

    for name in ("REAL", "CURVE", "TEMPERATURE", "CONTACT", "NOVEL_ONLY"):
        monkeypatch.setattr(bench, name, tmp_path / f"{name}.json")
    run = {"n": 10, "seconds": 6.0, "tally": {"accepted": 10, "sampled": 16}, "novel": 0.7, "unique": 1.0,
           "cov_r": 0.4, "cov_p": 0.9, "wdist_density": 0.3, "wdist_num_elems": 0.1, "stable_static": 0.5,
           "sun_static": 0.3, "sun_static_per_minute": 30.0, "relax_n": 4, "stable_relaxed": 0.75,
           "sun_relaxed": 0.5}
    bench.NOVEL_ONLY.write_text(json.dumps({"sha256": "x", "version": "0", "ref": 2995, "runs": {
        "app sampler": run, "app sampler, novel only": {**run, "novel": 1.0, "tally": {"accepted": 10,
                                                                                        "sampled": 20}}}}))
    r = {"sha256": "x", "version": "0", "cov_ref": 2995}
    lines = bench.novel_only_lines(bench._with_curve(r)["novel_only"])
    assert "| novelty | 70.0 % | 100.0 % |" in lines
    assert "| acceptance (returned / sampled) | 62.5 % | 50.0 % |" in lines
    assert "| S.U.N., relaxed CHGNet (first 4) | 50.0 % | 50.0 % |" in lines
    assert "by construction" in lines[1]
    for other in ({**r, "cov_ref": 500}, {**r, "sha256": "y"}, {**r, "version": "1"}):
        assert "novel_only" not in bench._with_curve(other)
    assert bench.novel_only_lines(None) == []


def test_temperature_runs_accumulate_and_render_after_the_plain_sampler(tmp_path, monkeypatch):
    import json

    from battgai.bench import materials as bench

    monkeypatch.setattr(bench, "TEMPERATURE", tmp_path / "t.json")
    stamp = {"model": "m", "sha256": "x", "version": "0", "seed": 0, "ref": 2995}
    run = {"temperature": 1.2, "element_temperature": 1.0, "n": 10, "novel": 0.8, "unique": 1.0, "cov_r": 0.9,
           "cov_p": 0.95, "wdist_density": 0.3, "wdist_num_elems": 0.1, "stable_static": 0.4, "sun_static": 0.2}

    def add(m: dict, st: dict = stamp) -> None:
        bench.TEMPERATURE.write_text(json.dumps({**st, "runs": bench._add_run(bench.TEMPERATURE, st, m)}))

    add(run)
    add({**run, "temperature": 1.0, "element_temperature": 1.4, "novel": 0.81, "relax_n": 4, "stable_relaxed": 0.75,
         "sun_relaxed": 0.5})
    add({**run, "novel": 0.85})  # the same temperatures again: replaces the first run
    temp = json.loads(bench.TEMPERATURE.read_text())
    assert [m["novel"] for m in temp["runs"]] == [0.81, 0.85]
    plain = {"runs": {"app sampler": {**run, "temperature": 1.0, "novel": 0.73}}}
    lines = bench.temperature_lines(temp, plain)
    table = [line for line in lines if line.startswith("| temperature")]
    assert [line.split(" | ")[1] for line in table] == ["73.0 %", "85.0 %", "81.0 %"]
    assert table[1].startswith("| temperature 1.2, element temperature 1 |") and table[1].endswith("| – |")
    assert table[2].endswith("| 75.0 % / 50.0 % (N = 4) |")
    assert "(`--cov-temperature 1.2`, `--element-temperature 1.4`)" in lines[1]
    assert len(bench.temperature_lines(temp, None)) == len(lines) - 1  # no plain row without its run
    assert bench.temperature_lines(None, plain) == []
    add(run, {**stamp, "sha256": "y"})  # other weights: earlier runs are dropped
    assert len(json.loads(bench.TEMPERATURE.read_text())["runs"]) == 1


def test_score_counts_missing_structures_as_misses():
    from battgai.bench.materials import score

    r = score([nacl(), None, nacl()], {"NaCl": []})
    assert r["produced"] == pytest.approx(2 / 3)
    assert r["valid"] == pytest.approx(2 / 3)
    assert r["unique"] == pytest.approx(1 / 3)  # the second NaCl duplicates the first
    assert r["novel"] == pytest.approx(2 / 3)


def test_wilson_interval_matches_the_textbook_values():
    from battgai.bench.materials import _interval

    assert _interval(0.38, 100) == "29-48 %"  # 28.9 .. 48.0
    assert _interval(0.0, 30) == "0-11 %"  # never 0-0: zero hits in 30 do not prove a zero rate


def test_hit_ratio_over_a_zero_baseline_is_never_met():
    from battgai.bench.materials import _hit_ratio, _times

    assert _hit_ratio(0.11, 0.03) > 3.6 and _times(_hit_ratio(0.11, 0.03), 2) == "3.67x"
    assert not _hit_ratio(0.11, 0.0) >= 2.0  # NaN: a target of ">= 2x" is missed, not met
    assert _times(_hit_ratio(0.11, 0.0)) == "n/a (baseline 0)"


def test_bench_refuses_an_empty_sun_subsample(capsys):
    from battgai.bench.materials import main

    with pytest.raises(SystemExit):  # argparse's error exit, before anything loads or runs
        main(["--sun-n", "0", "--no-write"])
    assert "--sun-n must be at least 1" in capsys.readouterr().err


def test_screen_problems_name_what_a_screen_lacks():
    from battgai.materials.pipeline import screen_problems

    assert "band gap" in screen_problems(Conditions(band_gap=2.0), None)[0]
    assert screen_problems(Conditions(voltage=4.0), None) == ["A voltage screen needs a working ion."]
    assert "reference phases" in screen_problems(Conditions(e_above_hull=0.0), None)[0]
    assert screen_problems(Conditions(working_ion="Li", voltage=4.0), None) == []


def test_screen_keeps_the_candidates_closest_to_the_targets_in_their_order(monkeypatch):
    from battgai.materials import pipeline

    cands = [pipeline.check(nacl(), Conditions(), None) for _ in range(5)]
    predicted = {0: (0.30, 3.0), 1: (0.00, 4.6), 2: (float("nan"), 4.5), 3: (-0.05, 3.9), 4: (0.02, 4.4)}

    def fake_energies(cs, refs, ion=None, relax=False, progress=None, potential="chgnet"):
        for k, c in enumerate(cands):
            c.e_above_hull, c.voltage = predicted[k]

    monkeypatch.setattr(pipeline, "add_energies", fake_energies)
    refs = type("Refs", (), {"potential": "chgnet"})()
    # E_hull on target 0: below the hull counts as on target (3 ties 1), and a missing prediction comes last.
    kept = pipeline.screen(cands, Conditions(e_above_hull=0.0), refs, keep=3)
    assert kept == [cands[1], cands[3], cands[4]]
    # Voltage 4.5 is two-sided: 4.4, 4.6 and 4.5 are nearest; kept in their original order.
    kept = pipeline.screen(cands, Conditions(working_ion="Li", voltage=4.5), None, keep=3)
    assert kept == [cands[1], cands[2], cands[4]]
    with pytest.raises(ValueError, match="working ion"):
        pipeline.screen(cands, Conditions(voltage=4.5), None, keep=3)


@requires_data("mp_20_cif_only")
def test_unseen_elements_are_those_of_no_training_crystal():
    from pymatgen.core import Composition, Element

    from battgai.materials.generation.sample import UNSEEN_ELEMENTS
    from battgai.materials.training.corpus import training_cifs_by_formula

    seen = {el.symbol for f in training_cifs_by_formula() for el in Composition(f).elements}
    assert set(UNSEEN_ELEMENTS) == {Element.from_Z(z).symbol for z in range(1, tk.MAX_Z + 1)} - seen


def test_an_unconstrained_sampler_never_offers_an_element_in_no_training_crystal():
    from battgai.materials.generation.sample import UNSEEN_ELEMENTS, _Masks

    s, size = tk.LAYOUT["el"]
    ok = _Masks(Conditions(), 1).el_ok[s: s + size]
    assert ok.sum() == size - len(UNSEEN_ELEMENTS) == 88  # H-Pu less Ar and Po-Ra
    assert not ok[95 - 1] and not ok[18 - 1] and ok[26 - 1]  # Am, Ar out; Fe in
