"""The package version, alone, so that importing any module never loads start-up code."""

__version__ = "0.1.0"
