"""Bundled model checkpoints: ``weights/<name>.safetensors`` plus a ``<name>.json`` card.

A card says what the model is for, how it was trained and measured, and the
sha256 of its weights. Loading verifies that sha256 and refuses a mismatch;
only safetensors files are read, so a checkpoint can never execute code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class ChecksumError(RuntimeError):
    """The weights on disk are not the ones the model card describes."""


class ModelNotFound(FileNotFoundError):
    """No bundled model of that name."""


@dataclasses.dataclass
class ModelCard:
    """Everything needed to trust, rebuild and retrain a bundled model.

    ``config`` holds the constructor arguments, so a model rebuilds itself from
    its card (as nanoGPT checkpoints do). ``metrics`` maps a metric name to its
    value on held-out data, measured by ``metrics_command``.
    """

    name: str
    task: str
    architecture: str
    config: dict[str, Any]
    parameters: int
    training_data: str
    split: str
    metrics: dict[str, float]
    metrics_command: str
    retrain_command: str
    sha256: str = ""
    size_bytes: int = 0
    date: str = ""
    notes: str = ""
    #: What a fine-tuned generator was tuned for (campaign conditions, voltage window, capacity, guidance).
    tuned_for: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"model card has unknown fields: {sorted(unknown)}")
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["tuned_for"]:  # only fine-tuned generators have one; other cards stay as they were written
            del d["tuned_for"]
        return d


def weights_dir() -> Path:
    """Folder holding the bundled weights (``BATTGAI_WEIGHTS_DIR`` overrides)."""
    return Path(os.environ.get("BATTGAI_WEIGHTS_DIR", REPO_ROOT / "weights"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_cards() -> list[ModelCard]:
    """Cards of every bundled model, sorted by task then name."""
    cards = [load_card(p.stem) for p in weights_dir().glob("*.json")]
    return sorted(cards, key=lambda c: (c.task, c.name))


def load_card(name: str) -> ModelCard:
    path = weights_dir() / f"{name}.json"
    if not path.exists():
        raise ModelNotFound(f"no bundled model named {name!r} (looked for {path})")
    return ModelCard.from_dict(json.loads(path.read_text()))


def save(name: str, tensors: dict[str, Any], card: ModelCard) -> ModelCard:
    """Write ``tensors`` as safetensors and the card with its sha256, size and date.

    Returns the completed card.
    """
    from safetensors.torch import save_file

    out = weights_dir()
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / f"{name}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(wpath))
    card = dataclasses.replace(
        card,
        name=name,
        sha256=sha256_file(wpath),
        size_bytes=wpath.stat().st_size,
        date=dt.date.today().isoformat(),
    )
    write_card(card)
    return card


def write_card(card: ModelCard) -> None:
    """Write ``card`` next to its weights; for the bundled weights, refresh docs/MODELS.md with it.

    docs/MODELS.md lists the bundled cards, so a card written without it leaves the docs stale
    (a test checks); cards written elsewhere (``BATTGAI_WEIGHTS_DIR``) leave the docs alone.
    """
    (weights_dir() / f"{card.name}.json").write_text(json.dumps(card.as_dict(), indent=2) + "\n")
    if weights_dir().resolve() == (REPO_ROOT / "weights").resolve():
        write_models_md()


def write_models_md() -> None:
    """Render every bundled card into docs/MODELS.md."""
    (REPO_ROOT / "docs" / "MODELS.md").write_text(models_markdown())


def load_tensors(name: str, device: str = "cpu") -> tuple[dict[str, Any], ModelCard]:
    """Read a bundled model's tensors after checking their sha256 against the card.

    Raises
    ------
    ModelNotFound
        When the card or the weights file is missing.
    ChecksumError
        When the weights file does not hash to the card's sha256.
    """
    card = load_card(name)
    wpath = weights_dir() / f"{name}.safetensors"
    if not wpath.exists():
        raise ModelNotFound(f"model card {name!r} exists but {wpath} is missing")
    return _load_verified(str(wpath), wpath.stat().st_mtime_ns, card.sha256, device), card


@functools.lru_cache(maxsize=32)
def _load_verified(path: str, mtime_ns: int, sha256: str, device: str) -> dict[str, Any]:
    # mtime is part of the cache key so a retrained file is re-verified.
    actual = sha256_file(Path(path))
    if actual != sha256:
        raise ChecksumError(
            f"{path}: sha256 {actual[:12]}... does not match the model card "
            f"({sha256[:12]}...); refusing to load. Retrain or restore the file."
        )
    from safetensors.torch import load_file

    return load_file(path, device=device)


def models_markdown(cards: list[ModelCard] | None = None) -> str:
    """docs/MODELS.md: one section per bundled model, written from its card."""
    cards = list_cards() if cards is None else cards
    lines = ["# Bundled models", "", "Written from the model cards in `weights/` by `python -m battgai registry`.", ""]
    for c in cards:
        lines += [
            f"## {c.name}",
            "",
            f"- task: {c.task}; architecture: {c.architecture}; {c.parameters:,} parameters; "
            f"{c.size_bytes / 1e6:.2f} MB; trained {c.date}",
            f"- training data: {c.training_data}",
            f"- split: {c.split}",
            f"- metrics (`{c.metrics_command}`): "
            + ", ".join(f"{k} = {v:.4g}" for k, v in c.metrics.items()),
            f"- retrain: `{c.retrain_command}`",
            f"- sha256: `{c.sha256}`",
        ]
        if c.notes:
            lines.append(f"- notes: {c.notes}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m battgai registry``: rewrite docs/MODELS.md from the cards."""
    del argv  # no options
    write_models_md()
