"""``python -m battgai train {materials,microstructure,health} [options]``: retrain a task's bundled models.

Each task's training module has ``main(argv)`` and writes its weights and model card through
:func:`battgai.core.registry.save`.
"""

from __future__ import annotations

import importlib

#: task -> the module whose ``main(argv)`` trains its models
TRAINERS = {"materials": "battgai.materials.training.train", "microstructure": "battgai.microstructure.train",
            "health": "battgai.health.train"}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in TRAINERS:
        raise SystemExit(f"usage: python -m battgai train {{{','.join(TRAINERS)}}} [options]")
    importlib.import_module(TRAINERS[argv[0]]).main(argv[1:])
