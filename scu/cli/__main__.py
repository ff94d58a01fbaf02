"""``python -m scu.cli``: the ``scukit`` command."""

import sys

from scu.cli import main

sys.exit(main())
