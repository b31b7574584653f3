"""``python -m battgai data status | fetch [DATASET ...]``: see :mod:`battgai.core.fetch`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "fetch"))
    p.add_argument("datasets", nargs="*", metavar="DATASET", help="dataset names (default: all; `status` lists them)")
    p.add_argument("--mirror", help="address of a copy of the data folder (http(s):// or file://); "
                                    "default BATTGAI_DATA_MIRROR, else each file's public original")


def run_cli(args: argparse.Namespace) -> int:
    from battgai.core.fetch import main

    return main(args.action, args.datasets, args.mirror)
