"""Every renamed public name of ``lightning_callbacks``, in one place, and how the old spelling keeps working.

A public name (in an ``__all__``, a documented keyword, or shown in the README) goes only through a
``DeprecationWarning`` that names its new spelling first; the README's *Changelog* lists each one.

- options (keywords of ``ShatteringMonitor``, ``ShatteringCallback`` and ``ShatteringMeasurer``):
  :data:`RENAMED_OPTIONS`, applied by :func:`check_keywords`, which also stops a misspelt option at
  once with the closest valid name;
- modules: ``lightning_callbacks.report`` and ``lightning_callbacks.figures`` are files of two lines
  that call :func:`moved_module`;
- functions: :data:`RENAMED_FUNCTIONS`, looked up by :func:`renamed_attribute` from a package's
  module-level ``__getattr__`` (``lightning_callbacks.functional``); plotting's old fit helpers
  (``law_label``, ``describe_fit``, ``fitted_law_curve``, ``MIN_R2``...), by :func:`moved_fit_helper`
  from ``lightning_callbacks.plotting``'s.

Old *files* (checkpoints with the measurer's state, results files with the key ``layers``) are read by
:meth:`lightning_callbacks.results.ShatteringResult.from_entry`, not here: they are data, not names.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "RENAMED_OPTIONS",
    "RENAMED_FUNCTIONS",
    "check_keywords",
    "unknown_name_message",
    "moved_module",
    "renamed_attribute",
    "warn_renamed",
    "moved_fit_helper",
]

# old keyword -> new keyword (renamed in 670fe3a: one word, "blocks", for what is profiled)
RENAMED_OPTIONS: dict[str, str] = {"layers": "blocks"}

# (module, old name) -> new name in the same module
RENAMED_FUNCTIONS: dict[tuple[str, str], str] = {
    ("lightning_callbacks.functional", "auto_layers"): "auto_blocks",
    ("lightning_callbacks.functional", "resolve_layers"): "resolve_blocks",
}


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """The one warning every renamed public name gives: what it was, what it is now."""
    warnings.warn(
        f"{old} is deprecated and will be removed in a later release: use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def unknown_name_message(owner: str, name: str, valid: Iterable[str], kind: str = "option") -> str:
    """An error message for an unknown ``name`` that names the closest valid one (as argparse and timm do)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{owner} got an unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}."


def check_keywords(
    given: dict[str, Any],
    valid: Iterable[str],
    owner: str,
    allow_renamed: bool = True,
    defaults: Mapping[str, Any] | None = None,
    stacklevel: int = 4,
) -> dict[str, Any]:
    """Rename old options in ``given`` (in place, and returned) to their new names, each with a
    ``DeprecationWarning``; refuse a misspelt option with a ``TypeError`` naming the closest valid one (and an
    old name with one naming the new, where ``owner`` never took old names). Called when an adapter is built,
    before any training, so a mistake stops at once.

    ``defaults`` (option -> default) is for LightningCLI, which passes every accepted option whether a config
    gives it or not: an old name left at its new name's default is dropped (it changes nothing), and a new
    name left at its default yields to the old name a config did give.
    """
    valid = set(valid)
    for name in list(given):
        if name in valid:
            continue
        new = RENAMED_OPTIONS.get(name)
        if new is None or new not in valid:
            raise TypeError(unknown_name_message(owner, name, valid))
        if not allow_renamed:
            raise TypeError(f"{owner} got {name}=, the old name of {new}=: use {new}=")
        value = given.pop(name)
        if defaults is not None and new in defaults:
            if value == defaults[new]:
                continue
            if new in given and given[new] == defaults[new]:
                del given[new]
        if new in given:
            raise TypeError(f"{owner} got both {name}= and {new}=: {name}= is the old name of {new}=, keep {new}= only")
        warn_renamed(f"{owner}({name}=...)", f"{new}=", stacklevel=stacklevel)  # the caller of owner
        given[new] = value
    return given


def moved_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) an alias of ``new``, with a warning: ``import old``,
    ``from old import x`` and ``old.x`` all reach ``new``'s objects."""
    module = importlib.import_module(new)
    warn_renamed(f"the module {old}", new, stacklevel=4)
    sys.modules[old] = module  # the import system hands the caller what sys.modules holds after the import


def renamed_attribute(module: str, name: str) -> Any:
    """For a module-level ``__getattr__``: the object ``name`` was renamed to, with a warning, or
    ``AttributeError`` (with the closest public name) where ``name`` was never one of ``module``'s."""
    new = RENAMED_FUNCTIONS.get((module, name))
    target = sys.modules[module]
    if new is None:
        close = difflib.get_close_matches(name, getattr(target, "__all__", []), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise AttributeError(f"module {module!r} has no attribute {name!r}{hint}")
    warn_renamed(f"{module}.{name}", f"{module}.{new}", stacklevel=4)
    return getattr(target, new)


def _fit_interpretation() -> dict[str, tuple[Any, str]]:
    """Plotting's old fit helpers (before 0.2): the same answers, now from
    :class:`~lightning_callbacks.functional.DecayFit` (old name -> (object, what to use instead))."""
    from lightning_callbacks.functional.fits import MIN_R2, DecayFit

    def fit_of(law: str | None, rate: float, r2: float, depths: Any = (), values: Any = ()) -> DecayFit:
        return DecayFit(law, rate, r2, tuple(map(float, depths)), tuple(map(float, values)))

    def fit_curve_entry(depths: Any, values: Any, law: str | None, rate: float, r2: float) -> Any:
        fit = fit_of(law, rate, r2, depths, values)
        curve = fit.curve()
        if curve is not None:
            return (*curve, fit.legend())
        return None if law is None else ([], [], fit.describe())

    new = "lightning_callbacks.functional.fit_decay(depths, values)"
    return {
        "fitted_law_curve": (
            lambda d, v, law, rate, r2, num=50: fit_of(law, rate, r2, d, v).curve(num),
            f"{new}.curve()",
        ),
        "law_label": (lambda law, rate, r2, variable="depth": fit_of(law, rate, r2).label(variable), f"{new}.label()"),
        "describe_fit": (lambda law, rate, r2: fit_of(law, rate, r2).describe(), f"{new}.describe()"),
        "unfitted_note": (lambda d, v: fit_of(None, 0.0, 0.0, d, v).unfitted_note(), f"{new}.unfitted_note()"),
        "drawable": (lambda law, rate, r2: fit_of(law, rate, r2).holds, f"{new}.holds"),
        "fit_curve_entry": (fit_curve_entry, f"plot_depth_curves(fits={{family: {new}}})"),
        "MIN_R2": (MIN_R2, "lightning_callbacks.functional.MIN_R2"),
    }


def moved_fit_helper(name: str) -> Any:
    """For ``lightning_callbacks.plotting``'s ``__getattr__``: an old fit helper, with a warning (plotting no
    longer interprets fits: :class:`~lightning_callbacks.functional.DecayFit` knows what may be said of itself)."""
    helpers = _fit_interpretation()
    if name not in helpers:
        raise AttributeError(f"module 'lightning_callbacks.plotting' has no attribute {name!r}")
    helper, new = helpers[name]
    warn_renamed(f"lightning_callbacks.plotting.{name}", new, stacklevel=4)
    return helper
