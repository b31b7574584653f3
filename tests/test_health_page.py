"""The health page end to end under AppTest: generate, latent map, download, with and without data."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "health.py")


@pytest.fixture(autouse=True)
def _no_shared_data(tmp_path, monkeypatch):
    # The demo fallback keeps these tests fast and independent of the shared data.
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))


def test_fallback_generate_and_download():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("demo" in i.value for i in at.info)  # says the curves are the project's own demo
    at.text_input(key="soh_targets").set_value("0.9, 0.8").run()
    at.button(key="generate").click().run()
    assert not at.exception and not at.error
    assert at.session_state["health_generation"].synthetic.q.shape[0] == 6
    assert len(at.get("download_button")) >= 1


def test_bad_target_soh_gives_an_error_not_a_crash():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.text_input(key="soh_targets").set_value("0.9, abc").run()
    at.button(key="generate").click().run()
    assert not at.exception
    assert at.error and "Cannot generate" in at.error[0].value


def test_quick_early_life_experiment_renders_bars():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="regime").set_value("first 30 % of each cell's life").run()
    at.button(key="experiment").click().run()
    assert not at.exception
    regime, est, res = at.session_state["health_experiment"]
    assert regime == "early" and est == "ridge" and len(res.rmse["ridge"]["+ cVAE"]) == 4  # 4 demo cells
    assert len(at.table) == 1


def test_estimate_soh_with_the_bundled_estimator():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="estimate").click().run()
    assert not at.exception and not at.error
    assert any("RMSE against file capacities" in m.value for m in at.markdown)
    est = at.session_state["health_estimate"][2]
    assert len(est.extrapolating) == len(est.curves)  # every curve judged against the training range
    assert any(b.key == "download_estimate" for b in at.get("download_button"))
    at.button(key="estimate").click().run()  # a rerun keeps showing it, once
    assert sum("RMSE against file capacities" in m.value for m in at.markdown) == 1


def test_both_generators_are_offered_and_the_default_is_the_bench_pick():
    from battgai.health.generation import generators

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert at.radio(key="generator").value == generators.default_kind()
    at.radio(key="generator").set_value("diffusion").run()
    at.button(key="generate").click().run()
    assert not at.exception and not at.error
    made = at.session_state["health_generation"]
    assert made.provenance.model == "health_diffusion" and made.synthetic.q.shape[0] == 9
    assert not any(s.value == "Latent space" for s in at.subheader)  # the map is the cVAE's
