"""Zero-import registration of timm-ll's models in timm.

A regular (non-editable) ``pip install timm-ll`` puts this module and
``timm_ll_autoregister.pth`` at the top of site-packages. Python runs the ``.pth`` line at
start-up, which imports this module; it only appends a tiny finder to ``sys.meta_path``
(no torch, no timm: start-up stays as fast as before). The first time anything imports
``timm``, the finder lets the normal machinery find and execute timm, then imports
``timm_ll``, whose import registers its models. So ``timm.create_model("ll_plain56")``
works in any program, without ``import timm_ll``.

Set ``TIMM_LL_AUTOREGISTER=0`` to turn it off. Limits: it acts only where the ``.pth`` is
processed (site-packages of the environment the package is installed in, not
``python -S`` or ``PYTHONPATH``-only setups); an error while importing ``timm_ll`` is
reported as a warning and leaves ``timm`` itself working.
"""

import os
import sys

_ENV_SWITCH = "TIMM_LL_AUTOREGISTER"


class _RegisterAfterTimm:
    """Meta-path finder that imports ``timm_ll`` right after ``timm`` has been executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one-shot: also keeps the nested imports below from recursing here
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is not None:
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_timm = spec.loader.exec_module

        def exec_module(module):
            exec_timm(module)
            try:
                import timm_ll  # noqa: F401  (registers the models)
            except Exception as error:  # never let a broken plugin break timm itself
                import warnings

                warnings.warn(f"timm-ll could not register its models in timm: {error!r}", stacklevel=2)

        spec.loader.exec_module = exec_module
        return spec


def install() -> bool:
    """Put the finder on ``sys.meta_path`` unless disabled or timm is already imported."""
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "timm" in sys.modules or any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _RegisterAfterTimm())
    return True


install()
