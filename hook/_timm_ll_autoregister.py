"""Zero-import registration of timm-ll's models in timm.

``pip install timm-ll`` (regular or editable) puts this module and ``timm_ll_autoregister.pth``
at the top of site-packages. Python runs the ``.pth`` line at start-up, which imports this
module; it only appends a tiny finder to ``sys.meta_path`` (no torch, no timm: start-up stays
as fast as before). Whenever the import system looks for the top-level module ``timm``, the
finder asks the finders behind it for timm's spec and hands it back with a loader that, once
timm's module has been *executed*, imports ``timm_ll``, whose import registers its models. So
``timm.create_model("ll_plain56")`` works in any program, without ``import timm_ll``.

Why a wrapping loader, and why the finder stays: libraries ask whether timm is installed
without importing it (``importlib.util.find_spec("timm")``: transformers, torchmetrics and
Lightning do so on import). Such a probe runs the finders and throws the spec away. The finder
therefore answers every probe with a fresh spec of its own (nothing global is patched: not
importlib's loader classes, not timm's real loader) and removes itself only when timm has
really been executed (or is found already imported).

Set ``TIMM_LL_AUTOREGISTER=0`` to turn it off. Limits: it acts only where the ``.pth`` is
processed (site-packages of the environment the package is installed in, not ``python -S``
or ``PYTHONPATH``-only setups); an error while importing ``timm_ll`` is reported as a warning
and leaves ``timm`` itself working.
"""

import os
import sys

_ENV_SWITCH = "TIMM_LL_AUTOREGISTER"
_TARGET = "timm"


class _RegisteringLoader:
    """Executes timm with its own loader, then imports ``timm_ll`` (which registers the models).

    Everything else (``get_resource_reader``, ``get_code``, ``is_package``...) is the real loader's.
    """

    def __init__(self, finder, loader):
        self._finder = finder
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # timm's module keeps its real loader (importlib.resources and reloads go through it)
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._finder.uninstall()  # timm has been executed: nothing left to wait for
        try:
            import timm_ll  # noqa: F401  (registers the models)
        except Exception as error:  # never let a broken plugin break timm itself
            import warnings

            warnings.warn(f"timm-ll could not register its models in timm: {error!r}", stacklevel=2)


class _RegisterAfterTimm:
    """Meta-path finder that answers for ``timm`` with a spec whose loader registers timm-ll's models."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        if _TARGET in sys.modules:  # imported by other means (a reload, a module put there by hand)
            self.uninstall()
            return None
        spec = None
        for finder in list(sys.meta_path):
            # skip this finder, and a second copy of it (the module imported twice under two names)
            if finder is self or type(finder).__name__ == type(self).__name__:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is not None:
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(self, spec.loader)  # this spec is a fresh object: only its caller sees it
        return spec

    def uninstall(self):
        """Leave ``sys.meta_path`` (idempotent)."""
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


def install() -> bool:
    """Put the finder on ``sys.meta_path`` unless disabled, timm is already imported, or it is there."""
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _TARGET in sys.modules or any(type(f).__name__ == _RegisterAfterTimm.__name__ for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _RegisterAfterTimm())
    return True


install()
