"""``python -m battgai.train ...`` is ``python -m battgai train ...`` (:mod:`battgai.cli.train`)."""

import sys

from battgai.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
