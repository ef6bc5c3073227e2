"""``python -m iomodels.compare`` == ``iomodels compare``."""

import sys

from iomodels.compare import main

sys.exit(main(sys.argv[1:]))
