"""The package version, in its own module so that no part of the package imports the facade."""

__version__ = "0.1.0"
