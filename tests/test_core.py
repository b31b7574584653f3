"""Unit tests for the backend core: device, registry, data, provenance."""

from __future__ import annotations

import json

import pytest
import torch

from battgai.core import data, device, registry
from battgai.core.provenance import Provenance


def _card(**kw) -> registry.ModelCard:
    base = dict(
        name="tiny", task="health", architecture="linear", config={"n": 3}, parameters=12,
        training_data="none", split="none", metrics={"rmse": 1.0}, metrics_command="-",
        retrain_command="-",
    )
    return registry.ModelCard(**{**base, **kw})


@pytest.fixture
def wdir(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def test_device_override(monkeypatch):
    device.get_device.cache_clear()
    monkeypatch.setenv("BATTGAI_DEVICE", "cpu")
    assert device.get_device() == "cpu"
    device.get_device.cache_clear()
    monkeypatch.setenv("BATTGAI_DEVICE", "tpu")
    with pytest.raises(RuntimeError, match="expected cpu"):
        device.get_device()
    device.get_device.cache_clear()
    if not torch.cuda.is_available():
        monkeypatch.setenv("BATTGAI_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="no CUDA"):
            device.get_device()
    device.get_device.cache_clear()


def test_registry_roundtrip(wdir):
    w = {"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    docs = (registry.REPO_ROOT / "docs" / "MODELS.md").read_text()
    card = registry.save("tiny", w, _card())
    assert (registry.REPO_ROOT / "docs" / "MODELS.md").read_text() == docs  # cards elsewhere leave the docs alone
    assert len(card.sha256) == 64 and card.size_bytes > 0 and card.date
    assert json.loads((wdir / "tiny.json").read_text())["sha256"] == card.sha256
    loaded, card2 = registry.load_tensors("tiny")
    assert torch.equal(loaded["weight"], w["weight"])
    assert card2 == card
    assert [c.name for c in registry.list_cards()] == ["tiny"]


def test_registry_refuses_tampered_weights(wdir):
    registry.save("tiny", {"w": torch.zeros(4)}, _card())
    path = wdir / "tiny.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # flip bits in the tensor payload
    path.write_bytes(bytes(raw))
    with pytest.raises(registry.ChecksumError, match="does not match"):
        registry.load_tensors("tiny")


def test_registry_missing_and_unknown_fields(wdir):
    with pytest.raises(registry.ModelNotFound):
        registry.load_tensors("nope")
    with pytest.raises(ValueError, match="unknown fields"):
        registry.ModelCard.from_dict({**_card().as_dict(), "surprise": 1})


@pytest.mark.parametrize("card", registry.list_cards(), ids=lambda c: c.name)
def test_every_bundled_model_loads(card):
    tensors, loaded = registry.load_tensors(card.name)
    assert tensors, f"{card.name} has no tensors"
    assert loaded.task in ("materials", "microstructure", "health")
    n = sum(t.numel() for t in tensors.values())
    # Weights may also hold buffers (normalisation statistics), never fewer values than the parameters.
    assert 0 < card.parameters <= n, f"card says {card.parameters} parameters, weights hold {n} values"
    for field in ("training_data", "split", "metrics_command", "retrain_command"):
        assert getattr(loaded, field).strip(), f"{card.name}: empty {field}"
    assert loaded.metrics, f"{card.name}: no metrics on its card"


def test_data_dir_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()
    with pytest.raises(data.DataNotFound, match="BATTGAI_DATA_DIR"):
        data.dataset_path("nasa_pcoe")
    assert not any(s.found for s in data.status())
    (tmp_path / "cycling" / "nasa_pcoe").mkdir(parents=True)
    assert data.dataset_path("nasa_pcoe").exists()
    with pytest.raises(KeyError):
        data.dataset_path("nope")


def test_default_data_dir_is_beside_repo(monkeypatch):
    monkeypatch.delenv("BATTGAI_DATA_DIR", raising=False)
    assert data.data_dir() == registry.REPO_ROOT.parent / "shared" / "data"


def test_provenance_json():
    p = Provenance.now(model="m", sha256="ab", settings={"n": 3}, seed=7)
    d = json.loads(p.to_json())
    assert d["model"] == "m" and d["seed"] == 7 and d["settings"] == {"n": 3} and d["created"]


def test_models_md_is_current():
    """docs/MODELS.md must be regenerated (`python -m battgai registry`) whenever a card changes."""
    md = registry.REPO_ROOT / "docs" / "MODELS.md"
    assert md.read_text() == registry.models_markdown(), "docs/MODELS.md is stale: run python -m battgai registry"


def test_writing_a_bundled_card_refreshes_models_md(monkeypatch):
    written = {}
    monkeypatch.setattr(registry, "write_models_md", lambda: written.setdefault("md", True))
    card = registry.load_card(registry.list_cards()[0].name)
    registry.write_card(card)  # unchanged card: the file is rewritten byte for byte
    assert written == {"md": True}


def test_write_section_replaces_only_its_own_section(tmp_path, monkeypatch):
    from battgai import bench

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench, "BENCHMARKS_MD", md)
    bench.write_section("health", "| a |\n|---|\n| 1 |")
    bench.write_section("materials", "M1")
    bench.write_section("health", "H2")
    text = md.read_text()
    assert "H2" in text and "| 1 |" not in text and "M1" in text
    assert text.count("<!-- health:start -->") == 1
    with pytest.raises(ValueError):
        bench.write_section("cooking", "x")
    with pytest.raises(SystemExit, match="usage"):
        bench.main(["cooking"])


def test_backend_never_imports_streamlit():
    import ast

    offenders = []
    for path in (registry.REPO_ROOT / "battgai").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(str(path.relative_to(registry.REPO_ROOT)))
    assert not offenders, f"the backend must stay UI-free: {offenders}"
