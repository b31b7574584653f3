"""``python -m battgai.train {materials,microstructure,health} [options]``: retrain bundled models.

Dispatches to ``battgai.<task>.train.main(argv)``; each writes its weights and
model card through :func:`battgai.registry.save`.
"""

from __future__ import annotations

import importlib
import sys

TASKS = ("materials", "microstructure", "health")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in TASKS:
        raise SystemExit(f"usage: python -m battgai.train {{{','.join(TASKS)}}} [options]")
    importlib.import_module(f"battgai.{argv[0]}.train").main(argv[1:])


if __name__ == "__main__":
    main()
