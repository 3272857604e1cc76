"""``python -m theater``: the same as the ``theater`` command."""

import sys

from .cli import main

sys.exit(main())
