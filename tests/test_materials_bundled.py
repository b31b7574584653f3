"""The bundled generator: loads through the registry, samples under constraints, CLI resumes, page works."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from battgai.core import registry
from battgai.materials.checks.validate import MIN_CONTACT_RATIO
from battgai.materials.generation import tokenizer as tk
from battgai.materials.generation.sample import Conditions, load_model, sample_tokens
from tests.conftest import requires_data

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bundled_model_samples_valid_crystals():
    from battgai.materials.pipeline import generate

    lm = load_model()
    assert len(lm.sha256) == 64
    cands, tally = generate(lm, Conditions(), 20, seed=0, resample=False)
    assert tally.dead_end <= 2 and tally.accepted == len(cands) == 20 - tally.dead_end
    assert sum(c.valid_structure for c in cands) >= 18  # raw validity is ~99 % (see docs/BENCHMARKS.md)
    assert sum(c.valid_smact for c in cands) >= 18


def test_resampling_returns_only_valid_neutral_crystals_and_counts_the_rejected():
    from battgai.materials.pipeline import generate

    cands, tally = generate(load_model(), Conditions(), 80, seed=0)
    assert len(cands) == tally.accepted == 80
    assert all(c.valid_structure and c.valid_smact and c.contact_ratio >= MIN_CONTACT_RATIO for c in cands)
    assert tally.sampled == tally.accepted + tally.dead_end + tally.invalid + tally.overlapping + tally.not_neutral
    # About a third of raw samples have overlapping atoms (docs/BENCHMARKS.md): rejection did work.
    assert tally.overlapping > 10


def test_novel_only_rejects_known_structures_and_resamples():
    from battgai.materials.pipeline import generate

    plain, _ = generate(load_model(), Conditions(), 20, seed=3)
    # Pretend the first eight were in the training set: the same seed samples them again, and they must go.
    known: dict[str, list] = {}
    for c in plain[:8]:
        known.setdefault(c.formula, []).append(c.structure)
    cands, tally = generate(load_model(), Conditions(), 20, seed=3, known=known, novel_only=True)
    assert len(cands) == tally.accepted == 20
    assert tally.known >= 8 and all(c.novel for c in cands)
    assert tally.sampled == (tally.accepted + tally.dead_end + tally.invalid + tally.overlapping
                             + tally.not_neutral + tally.known)
    # The first round draws the same sequences as before: what it kept after the eight comes first.
    assert cands[0].structure == plain[8].structure
    with pytest.raises(ValueError, match="known structures"):
        generate(load_model(), Conditions(), 5, novel_only=True)


def test_the_neutrality_mask_holds_the_site_list_open_unless_the_caller_rejects_instead():
    from battgai.materials.checks.validate import smact_valid
    from battgai.materials.pipeline import build_all

    def not_neutral(hold: bool) -> tuple[int, float]:
        built = [x[0] for x in build_all(*sample_tokens(load_model(), Conditions(), 60, seed=0, hold_neutral=hold))
                 if x is not None]
        bad = sum(not smact_valid(s.composition.element_composition.as_dict()) for s in built)
        return bad, sum(len(s.composition.elements) for s in built) / len(built)

    (held, elements_held), (free, elements_free) = not_neutral(True), not_neutral(False)
    assert free > held  # the mask did make compositions neutral...
    assert elements_free < elements_held  # ...by adding elements the model would not have written


def test_guidance_without_targets_changes_nothing_and_with_targets_changes_samples():
    plain, _ = sample_tokens(load_model(), Conditions(), 6, seed=4)
    same, _ = sample_tokens(load_model(), Conditions(), 6, seed=4, guidance=3.0)
    assert (plain == same).all()
    c = Conditions(formation_energy=-2.5)
    cond, _ = sample_tokens(load_model(), c, 6, seed=4)
    guided, ok = sample_tokens(load_model(), c, 6, seed=4, guidance=3.0)
    assert (cond[:, :5] == guided[:, :5]).all() and (cond != guided).any()
    assert ok.all()


def test_temperature_narrows_or_widens_what_the_model_samples():
    from battgai.materials.pipeline import generate

    def spacegroups(temperature: float) -> int:
        tokens, _ok = sample_tokens(load_model(), Conditions(), 40, seed=0, temperature=temperature)
        return len(set(tokens[:, 5].tolist()))  # the token after BOS and the four condition tokens

    # Measured: 4 distinct space groups in 40 at T = 0.3, 22 at T = 1, 25 at T = 1.5.
    assert spacegroups(0.3) <= 6 < 15 <= spacegroups(1.0)
    with pytest.raises(ValueError, match="temperature"):
        generate(load_model(), Conditions(), 5, temperature=0.0)


def test_element_temperature_changes_only_which_elements_are_written():
    from battgai.materials.pipeline import generate

    def sample(element_temperature: float) -> np.ndarray:
        tokens, _ok = sample_tokens(load_model(), Conditions(), 40, seed=0, element_temperature=element_temperature)
        return tokens

    def spread(tokens: np.ndarray) -> float:  # entropy (nats) of the element tokens written
        first, size = tk.LAYOUT["el"]
        _, counts = np.unique(tokens[(tokens >= first) & (tokens < first + size)], return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())

    cold, plain, hot = sample(0.3), sample(1.0), sample(2.0)
    # Space group and first Wyckoff letter come before any element token: the same draws at every element temperature.
    assert (cold[:, 5:7] == plain[:, 5:7]).all() and (hot[:, 5:7] == plain[:, 5:7]).all()
    assert (plain == sample_tokens(load_model(), Conditions(), 40, seed=0)[0]).all()
    # Measured: 3.20 at 0.3, 3.56 at 1, 3.85 at 2 (the commonest element, O, written 54, 31 and 16 times).
    assert spread(cold) + 0.2 < spread(plain) < spread(hot) - 0.2
    with pytest.raises(ValueError, match="element temperature"):
        generate(load_model(), Conditions(), 5, element_temperature=0.0)


def test_bundled_model_obeys_hard_constraints():
    from battgai.materials.pipeline import generate

    c = Conditions(allowed_elements=("Li", "Mn", "O"), required_elements=("O",), working_ion="Li",
                   spacegroups=(166,), n_atoms=4)
    cands, tally = generate(load_model(), c, 10, seed=1)
    assert len(cands) == tally.accepted >= 8
    for cand in cands:
        assert cand.obeys_elements
        assert {"Li", "O"} <= {el.symbol for el in cand.structure.composition.elements}
        assert cand.spacegroup_asked == 166
        assert cand.capacity > 0
    tokens, ok = sample_tokens(load_model(), c, 10, seed=1)
    # The atom count is enforced on the Wyckoff description; a built cell can reduce further when
    # sampled coordinates happen to add translational symmetry.
    assert all(tk.decode(t).n_atoms == 4 for t in tokens[ok])


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_streams_and_resumes(tmp_path):
    from battgai.cli.generate import generate_to_dir

    out = tmp_path / "run"
    n = generate_to_dir(12, "allowed=Na,Cl,K", out, seed=2, batch_size=6, novelty=False)
    rows = read_rows(out / "checks.csv")
    assert n == len(rows) and len(list((out / "cifs").glob("*.cif"))) == len(rows)
    # Simulate an interruption after the first batch, then resume: the result is the same.
    first = [r for r in rows if r["batch"] == "0"]
    with open(out / "checks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(first)
    generate_to_dir(12, "allowed=Na,Cl,K", out, seed=2, batch_size=6, novelty=False)
    again = read_rows(out / "checks.csv")
    assert [r["formula"] for r in again] == [r["formula"] for r in rows]
    with pytest.raises(SystemExit, match="other settings"):
        generate_to_dir(12, "allowed=Na,Cl", out, seed=2, batch_size=6, novelty=False)
    with pytest.raises(SystemExit, match="other settings"):  # nor at another temperature
        generate_to_dir(12, "allowed=Na,Cl,K", out, seed=2, batch_size=6, novelty=False, temperature=0.8)
    with pytest.raises(SystemExit, match="other settings"):
        generate_to_dir(12, "allowed=Na,Cl,K", out, seed=2, batch_size=6, novelty=False, element_temperature=1.4)
    # A run made by another release (perhaps another sampler) is not extended either.
    prov = json.loads((out / "provenance.json").read_text())
    (out / "provenance.json").write_text(json.dumps({**prov, "battgai_version": "0.0.1"}))
    with pytest.raises(SystemExit, match=r"battgai 0\.0\.1"):
        generate_to_dir(12, "allowed=Na,Cl,K", out, seed=2, batch_size=6, novelty=False)
    with pytest.raises(SystemExit, match="impossible"):
        generate_to_dir(5, "allowed=Li,O;required=Fe", tmp_path / "x", novelty=False)


@requires_data("mp_20_cif_only")
def test_cli_novel_only_writes_only_novel_crystals_and_records_it(tmp_path):
    from battgai.cli.generate import generate_to_dir

    out = tmp_path / "novel"
    # Na-Cl-K: half of a plain run with this seed reproduces training crystals (NaCl, KCl, K3Na); here none
    # does, and up to 16 resampling rounds may still leave a slot empty.
    n = generate_to_dir(10, "allowed=Na,Cl,K", out, seed=2, batch_size=10, novel_only=True)
    rows = read_rows(out / "checks.csv")
    assert n == len(rows) >= 8 and all(r["new"] == "True" for r in rows)
    assert json.loads((out / "provenance.json").read_text())["settings"]["novel_only"] is True
    with pytest.raises(SystemExit, match="other settings"):  # a plain run does not extend a novel-only one
        generate_to_dir(10, "allowed=Na,Cl,K", out, seed=2, batch_size=10)


def test_cli_refuses_a_temperature_of_zero(capsys):
    from battgai.cli import main

    with pytest.raises(SystemExit):
        main(["generate", "--n", "5", "--out", "unused", "--temperature", "0"])
    assert "--temperature and --element-temperature must be above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--n", "5", "--out", "unused", "--element-temperature", "-1"])
    assert "must be above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--n", "5", "--out", "unused", "--novel-only", "--no-novelty"])
    assert "--novel-only needs the novelty check" in capsys.readouterr().err


def test_page_default_render_is_light():
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Generate" in i.value for i in at.info)


def test_page_explains_impossible_constraints():
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=60).run()
    at.text_input[0].set_value("Li, O")
    at.text_input[1].set_value("Fe")
    at.button[0].click().run()
    assert not at.exception
    assert any("not in the allowed set" in e.value for e in at.error)


def test_page_explains_a_screen_without_a_target_it_can_rank_by():
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=60).run()
    next(n for n in at.number_input if n.label.startswith("Screen")).set_value(3)
    at.button[0].click().run()
    assert not at.exception
    assert any("formation-energy, E_hull or voltage target" in e.value for e in at.error)


@pytest.mark.usefixtures("no_shared_data")
def test_page_explains_novel_only_without_the_training_set(tmp_path, monkeypatch):
    from battgai.materials.checks import bundle

    monkeypatch.setattr(bundle, "BUNDLE_DIR", tmp_path / "no-bundle")  # neither shared data nor the bundle
    bundle.load_known_phases.cache_clear()
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=60).run()
    next(c for c in at.checkbox if c.label == "Novel only").check()
    at.button[0].click().run()
    assert not at.exception
    assert any("'Novel only' needs the known phases" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.dataframe
    bundle.load_known_phases.cache_clear()


@pytest.mark.usefixtures("no_shared_data")  # a fresh clone: the bundled novelty index
def test_page_generates_in_demo_mode():
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=120).run()
    at.slider[0].set_value(10)
    next(s for s in at.slider if s.label == "Element temperature").set_value(1.4)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe and len(at.dataframe[0].value) >= 8
    assert at.session_state["mat_prov"].settings["element_temperature"] == 1.4  # downloads say how they were made
    assert at.dataframe[0].value.n_atoms.max() <= tk.MAX_ATOMS
    assert any("known phases (MP-20 all splits, MPTS-52, electrodes)" in c.value for c in at.caption)
    assert at.dataframe[0].value.new.notna().all()


def test_sampling_leaves_autograd_on_for_chgnet():
    import torch

    from battgai.materials.generation.sample import sample_tokens

    sample_tokens(load_model(), Conditions(), 2, seed=0)
    assert torch.is_grad_enabled()  # CHGNet relaxation in the same process needs gradients


def test_page_samples_the_chosen_generator():
    # The reward-fine-tuned model is offered beside the default; what it made says so in the provenance.
    at = AppTest.from_file(str(ROOT / "pages/materials.py"), default_timeout=120).run()
    box = next(s for s in at.selectbox if s.label == "Generator")
    assert box.options[0] == "materials_gpt" and "materials_gpt_rl" in box.options
    box.set_value("materials_gpt_rl")
    at.slider[0].set_value(10)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    prov = at.session_state["mat_prov"]
    assert prov.model == "materials_gpt_rl" and prov.sha256 == registry.load_card("materials_gpt_rl").sha256
