"""``python -m dataflow``: the same as the ``dataflow`` command."""

import sys

from .cli import main

sys.exit(main())
