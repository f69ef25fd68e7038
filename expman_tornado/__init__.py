"""expman-tornado: a Tornado server for experiments written by the expman logger."""

__version__ = "0.1.0"
