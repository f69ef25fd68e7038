"""The core API group: experiments, runs, metrics, histograms, logs, totals, server info, OpenAPI."""

from . import experiments, histograms, logs, metrics, openapi, runs, server

default_handlers = (
    experiments.default_handlers
    + runs.default_handlers
    + metrics.default_handlers
    + histograms.default_handlers
    + logs.default_handlers
    + server.default_handlers
    + openapi.default_handlers
)
