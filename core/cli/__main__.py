"""``python -m core.cli``: the ``attnlab`` command (used where the console script is not on PATH)."""

import sys

from core.cli import console_main

sys.exit(console_main())
