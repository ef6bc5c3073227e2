"""The argparse base every iomodels command line uses."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2  # a bad flag, an unknown model: the contract's usage error


def at_least(minimum: float, kind: type = int):
    """An argparse ``type=``: ``kind(text)``, refused below ``minimum`` with a one-line reason."""

    def parse(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error: "invalid int value"
    return parse


class ArgParser(argparse.ArgumentParser):
    """argparse with the one-line error the CLI contract asks for (not usage + error), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
