"""``python -m battgai health-transfer FILE --labelled CELL [...]``: the page's transfer step without the UI.

Writes ``OUT/soh_estimates.csv`` (every unlabelled cycle: estimate, calibrated 1-sigma, the 95 % band
``soh_low`` / ``soh_high``, extrapolating flag; ``provenance.json`` says how the band was calibrated),
``OUT/pipelines.csv`` (each pipeline scored on the unlabelled cells where the file holds their
capacities) and ``OUT/provenance.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from battgai.health.estimation.transfer import WINDOW_FRACTION


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="cycler export (CSV, one row per sample)")
    p.add_argument("--labelled", nargs="+", required=True, metavar="CELL",
                   help="cells with full discharges whose capacities train the estimator")
    p.add_argument("--nominal", type=float, required=True, help="nominal capacity of the cells (Ah)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--window", type=float, nargs=2, default=WINDOW_FRACTION, metavar=("TOP", "BOTTOM"),
                   help="the estimator's window as fractions of the loaded voltage range (default %(default)s)")
    p.add_argument("--map", nargs="*", default=[], metavar="FIELD=COLUMN",
                   help="column mapping where the guess is wrong, e.g. voltage_v=Ecell/V")
    p.add_argument("--no-source", action="store_true", help="train on the labelled cells only, not NASA + them")
    p.add_argument("--generator-steps", type=int, default=0,
                   help="> 0: add cVAE curves of the labelled cells (trained that many steps)")
    p.add_argument("--seed", type=int, default=0)


def run_cli(args: argparse.Namespace) -> int:
    from battgai.core.data import DataNotFound
    from battgai.health import schema
    from battgai.health.estimation import owncells
    from battgai.health.preprocess import nasa_curves
    from battgai.uploads.errors import UploadError

    raw = args.file.read_bytes()
    try:
        from battgai.uploads import read_csv

        mapping = schema.guess_mapping(list(read_csv(raw, nrows=1000).columns))
        for item in args.map:
            field, _, col = item.partition("=")
            if field not in schema.SCHEMA:
                raise SystemExit(f"--map: unknown field {field!r}; fields: {', '.join(schema.SCHEMA)}")
            mapping[field] = col or None
        data = schema.read_upload(raw, mapping, args.nominal, args.file.name)
        curves = owncells.curves_of(data)
        source, name = None, "none (--no-source)"
        if not args.no_source:
            try:
                source, name = owncells.nasa_source_labs(nasa_curves()), "NASA PCoE groups"
            except DataNotFound as exc:
                print(f"NASA source data absent ({exc}); training on the labelled cells only")
        res = owncells.run(curves, list(args.labelled), source, tuple(args.window), args.generator_steps,
                           args.seed, source_name=name)
    except (UploadError, schema.MappingError, owncells.TransferError) as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soh_estimates.csv").write_bytes(res.csv())
    (args.out / "pipelines.csv").write_bytes(res.scores_csv())
    (args.out / "provenance.json").write_text(res.provenance.to_json())
    for note in data.notes + res.warnings:
        print(f"note: {note}")
    print(res.pick.reason())
    print(res.scores.to_string(index=False) if len(res.scores) else "no unlabelled cell to score")
    print(f"wrote {len(res.estimates)} estimates to {args.out / 'soh_estimates.csv'}")
    return 0
