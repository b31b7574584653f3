"""``python -m battgai ...``: the one command-line entry; every subcommand is registered here.

Two kinds of subcommand:

- parsed here: ``generate``, ``data``, ``health-transfer``, ``campaign``, ``verify`` (each module has
  ``add_arguments(parser)`` and ``run_cli(args) -> exit status``);
- with options of their own, handed the rest of the command line: ``bench``, ``train``,
  ``finetune``, ``bundle``, ``registry`` (each names a ``main(argv)``).

``python -m battgai.bench ...`` and ``python -m battgai.train ...`` are the same as
``python -m battgai bench ...`` and ``python -m battgai train ...``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommands parsed here: name -> (module with add_arguments / run_cli, help).
PARSED = {
    "generate": ("battgai.cli.generate", "generate crystals to a folder (CIFs + checks.csv), resumable"),
    "data": ("battgai.cli.data", "the shared datasets: status (what is present and verified) or fetch them"),
    "health-transfer": ("battgai.cli.health_transfer", "SOH of your own cells from a few labelled ones (CSV out)"),
    "campaign": ("battgai.cli.campaign", "rounds of sample -> screen -> relax on Ray -> judge, stored and resumable"),
    "verify": ("battgai.cli.verify", "check CIFs: the page's checks, or DFT (GPAW) against the known phases"),
}
#: Subcommands with options of their own: name -> (module with main(argv), help).
DELEGATED = {
    "bench": ("battgai.bench", "side-by-side benchmarks that write docs/BENCHMARKS.md"),
    "train": ("battgai.cli.train", "retrain a task's bundled models"),
    "finetune": ("battgai.materials.discovery.finetune", "reward fine-tuning of the crystal GPT"),
    "bundle": ("battgai.materials.training.bundle", "rebuild the bundled MP-20 index and references"),
    "registry": ("battgai.core.registry", "write docs/MODELS.md from the model cards"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m battgai", description="battgai batch tools")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in PARSED.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text))
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text + f" (`python -m battgai {name} --help`)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in DELEGATED:
        importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
        return
    args = parser().parse_args(argv)
    raise SystemExit(importlib.import_module(PARSED[args.command][0]).run_cli(args))
