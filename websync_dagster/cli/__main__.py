"""``python -m websync_dagster.cli``: the ``websync`` command."""

import sys

from websync_dagster.cli.process import main

if __name__ == "__main__":
    sys.exit(main())
