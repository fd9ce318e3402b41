"""``python -m evoforge``: the same as the ``evoforge`` command."""

import sys

from evoforge.engine.cli import main

sys.exit(main())
