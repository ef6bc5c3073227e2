import sys

from iomodels.cli import main

sys.exit(main())
