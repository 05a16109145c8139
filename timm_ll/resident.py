"""Deprecated alias of :mod:`timm_ll.app.resident` (moved in 0.1.0; see ``timm_ll.deprecations``)."""

from timm_ll.deprecations import moved_module

moved_module(__name__, "timm_ll.app.resident")
