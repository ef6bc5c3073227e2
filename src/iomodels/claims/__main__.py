import sys

from iomodels.claims.runner import main

sys.exit(main(sys.argv[1:]))
