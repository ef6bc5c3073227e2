"""``iomodels compare``: every model under the same load, side by side; results.json,
charts, report.html.  The measuring harness that ``iomodels claims`` builds on.

  runner.py   starts each model's server (iomodels.harness), runs the cells of
              the grid on it with the load generator and measures them (the
              method is documented there); summarize() and the results document
  render.py   a results document -> terminal tables, PNG charts, one
              self-contained report.html
  command.py  the command line: ``main(argv)``
"""

from iomodels.compare.command import main

__all__ = ["main"]
