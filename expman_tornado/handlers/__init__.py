"""Request handlers, one module per route group; each module ends with ``default_handlers``."""
