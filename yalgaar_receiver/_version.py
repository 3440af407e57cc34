"""Internal: the package's version, read by the packaging (hatch) and by the command line."""

__version__ = "0.2.0"
