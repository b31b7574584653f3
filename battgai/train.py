"""``python -m battgai.train {materials,microstructure,health} [options]``: retrain bundled models.

Dispatches to ``battgai.<task>.train.main(argv)``; each writes its weights and
model card through :func:`battgai.registry.save`.
"""

from __future__ import annotations

from battgai.bench import dispatch


def main(argv: list[str] | None = None) -> None:
    dispatch("train", argv)


if __name__ == "__main__":
    main()
