"""``python -m iomodels.loadgen`` == ``iomodels bench``."""

import sys

from iomodels.loadgen import main

sys.exit(main(sys.argv[1:]))
