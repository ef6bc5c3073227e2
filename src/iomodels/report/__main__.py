"""``python -m iomodels.report`` == ``iomodels compare``."""

import sys

from iomodels.report import main

sys.exit(main(sys.argv[1:]))
