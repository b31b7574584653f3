"""``python -m battgai ...``: see :mod:`battgai.cli`."""

from battgai.cli import main

if __name__ == "__main__":
    main()
