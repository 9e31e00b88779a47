"""The package version, in the bottom layer so any layer may report it."""

__version__ = "0.1.0"
