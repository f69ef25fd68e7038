"""A handler group module that cannot be imported."""

raise RuntimeError("this module fails on import")
