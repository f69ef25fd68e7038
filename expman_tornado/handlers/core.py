"""The core API group: experiments, runs, metrics, logs, totals and server info."""

from . import experiments, logs, metrics, runs, server

default_handlers = (
    experiments.default_handlers
    + runs.default_handlers
    + metrics.default_handlers
    + logs.default_handlers
    + server.default_handlers
)
