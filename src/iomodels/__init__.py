"""iomodels: the five IO models of Unix network programming as real Python servers."""

__version__ = "0.1.0"
