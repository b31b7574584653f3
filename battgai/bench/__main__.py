"""``python -m battgai.bench ...`` is ``python -m battgai bench ...`` (:mod:`battgai.bench`)."""

import sys

from battgai.cli import main

main(["bench", *sys.argv[1:]])
