"""AppTest of pages/microstructure.py: fast first render, each task on demo data, data-absent fallback."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

PAGE = str(ROOT / "pages" / "microstructure.py")


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    import streamlit as st

    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    st.cache_data.clear()  # the cache is per process: drop samples loaded by earlier tests
    yield
    st.cache_data.clear()


def test_first_render_runs_no_model():
    t0 = time.perf_counter()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert time.perf_counter() - t0 < 20
    assert "enhance" not in at.session_state and "generate" not in at.session_state
    assert at.button(key="run_enhance")  # the default task waits for its button


def test_demo_denoise_then_sr_then_segment(no_data):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert any("not present" in i.value for i in at.info)  # says it fell back to the demo
    at.button(key="run_enhance").click().run()
    assert not at.exception and not at.error
    assert at.session_state["enhance"]["result"].task == "denoise"
    assert len(at.dataframe) == 1
    at.radio(key="task").set_value("Super-resolution x2").run()
    at.button(key="run_enhance").click().run()
    assert not at.exception and at.session_state["enhance"]["result"].after.shape == (512, 512)
    at.radio(key="task").set_value("Segment + measure").run()
    at.button(key="run_segment").click().run()
    assert not at.exception and not at.error
    assert at.session_state["segment"]["result"][0].labels.max() == 2


def test_demo_volume_segment_and_generate(no_data):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="task").set_value("Segment + measure").run()
    at.radio(key="demo_kind").set_value("3D segmented volume").run()
    at.button(key="run_segment").click().run()
    assert not at.exception and not at.error
    assert at.slider(key="slice_seg")  # slice browser for the stack
    assert at.checkbox(key="as_volume_synthetic demo volume (made by battgai, not real data)").value
    assert at.session_state["segment"]["result"][0].labels.shape == (64, 64, 64)
    assert at.session_state["segment"]["zip"][:2] == b"PK"  # download bundle built once, with the result
    at.radio(key="task").set_value("Generate a microstructure").run()
    at.button(key="run_generate").click().run()
    assert not at.exception
    assert at.session_state["generate"]["result"][0].labels.shape == (64, 64, 64)
    at.radio(key="gen_model").set_value("SliceGAN (small, CPU-trained)").run()
    at.button(key="run_generate").click().run()
    assert not at.exception and not at.error
    res = at.session_state["generate"]["result"][0]
    assert res.model == "microstructure_slicegan" and res.labels.shape == (64, 64, 64)
