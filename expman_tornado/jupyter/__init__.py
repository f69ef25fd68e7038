"""Jupyter: the server extension, and notebooks opened on runs."""
