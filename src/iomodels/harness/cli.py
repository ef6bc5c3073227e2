"""The argparse base every iomodels command line uses."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2  # a bad flag, an unknown model: the contract's usage error


class ArgParser(argparse.ArgumentParser):
    """argparse with the one-line error the CLI contract asks for (not usage + error), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
