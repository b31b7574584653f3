"""Shared test set-up: offline, headless, and a way to skip tests whose real data is absent."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # pages import `battgai` and `components` from the repo root
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("BATTGAI_DEVICE", "cpu")
# Page tests under streamlit.testing run a page's heavy step in this process, so that their monkeypatches and
# cleared caches reach it; the end-to-end tests serve the app as shipped, on Ray (battgai.core.engine).
os.environ.setdefault("BATTGAI_ENGINE", "inline")
# Runs the pages save go to a folder of this test session, never to the user's own run store.
os.environ.setdefault("BATTGAI_HOME", tempfile.mkdtemp(prefix="battgai_test_home_"))


def requires_data(key: str) -> pytest.MarkDecorator:
    """Skip unless shared dataset ``key`` (see ``battgai.core.data.DATASETS``) is present."""
    from battgai.core import data

    try:
        path = data.dataset_path(key)
    except data.DataNotFound as exc:
        return pytest.mark.skip(reason=str(exc))
    return pytest.mark.skipif(False, reason=f"data at {path}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a test module: two threads on a shared 2-core machine spin against
    each other and run ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_shared_data(tmp_path, monkeypatch):
    """Demo mode: BATTGAI_DATA_DIR points nowhere, and the loaders that cache shared data forget it
    (an earlier test in the same process may have filled them, which would hide the absence)."""
    import streamlit as st

    from battgai.materials.checks import references
    from battgai.materials.training import corpus

    cached = (corpus.mp20_frame, corpus.electrode_pairs, corpus.training_cifs_by_formula,
              references.known_phases, references.training_structures, references.reference_phases)
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "absent"))
    for f in cached:
        f.cache_clear()
    st.cache_resource.clear()  # the pages keep the training set and reference phases there
    yield
    for f in cached:
        f.cache_clear()
    st.cache_resource.clear()
