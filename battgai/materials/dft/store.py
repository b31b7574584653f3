"""DFT energies of known phases, computed once per preset and reused by every later check.

One JSON file per preset key (the numbers an energy depends on) in ``BATTGAI_HOME/dft/``, seeded
from the energies bundled with the code (``battgai/materials/data/dft_references.json``, written by
``python -m battgai bench dft``), so a fresh clone does not recompute the phases the benches did.
Only finished calculations are written, under a file lock, so two workers never lose each
other's energies and an interrupted one leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from battgai.materials.dft.calculator import DFTEnergy
from battgai.materials.dft.settings import Preset

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "dft_references.json"


class DFTStore:
    """Reference id -> :class:`DFTEnergy` for one preset."""

    def __init__(self, preset: Preset, root: Path | None = None, bundled: Path | None = BUNDLED):
        from battgai.core.runs import home

        self.preset = preset
        self.path = (root or home() / "dft") / f"{preset.key}.json"
        self._bundled: dict[str, dict] = {}
        if bundled is not None and bundled.exists():
            self._bundled = json.loads(bundled.read_text()).get(preset.key, {})

    def _read(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, ref_id: str) -> DFTEnergy | None:
        found = self._read().get(ref_id) or self._bundled.get(ref_id)
        return DFTEnergy(**found) if found else None

    def put(self, ref_id: str, energy: DFTEnergy) -> None:
        from battgai.core.runs import write_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            values = self._read()
            values[ref_id] = energy.as_dict()
            write_atomic(self.path, json.dumps(values, indent=0, sort_keys=True).encode())

    def all(self) -> dict[str, DFTEnergy]:
        return {k: DFTEnergy(**v) for k, v in {**self._bundled, **self._read()}.items()}


def export_bundled(store: DFTStore, path: Path = BUNDLED) -> int:
    """Merge ``store``'s reference energies into the bundled file (what the benches computed); returns how many.

    Energies under other presets in the file are kept.
    """
    bundled = json.loads(path.read_text()) if path.exists() else {}
    values = {**bundled.get(store.preset.key, {}), **{k: e.as_dict() for k, e in store.all().items()}}
    bundled[store.preset.key] = dict(sorted(values.items()))
    path.write_text(json.dumps(bundled, indent=0, sort_keys=True) + "\n")
    return len(values)
