"""Deprecated alias of :mod:`lightning_callbacks.reporting` (see ``lightning_callbacks.deprecations``)."""

from lightning_callbacks.deprecations import moved_module

moved_module(__name__, "lightning_callbacks.reporting")
