"""``python -m tidemark validate [PATH…]``: the ``tidemark`` command where its console script is not installed."""

import sys

from tidemark.cli import main

sys.exit(main())
