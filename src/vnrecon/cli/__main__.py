"""``python -m vnrecon.cli`` (also what torchrun launches: ``torchrun ... -m vnrecon.cli train``)."""

import sys

from . import main

sys.exit(main())
