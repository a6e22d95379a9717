"""``python -m websync_dagster.demo``: see ``websync_dagster.demo.runner``."""

import sys

from websync_dagster.demo.runner import main

sys.exit(main())
