"""Every renamed public name of ``lightning_callbacks``, in one place, and how the old spelling keeps working.

A public name (in an ``__all__``, a documented keyword, or shown in the README) goes only through a
``DeprecationWarning`` that names its new spelling first; the README's *Changelog* lists each one.

- options (keywords of ``ShatteringMonitor``, ``ShatteringCallback`` and ``ShatteringMeasurer``):
  :data:`RENAMED_OPTIONS`, applied by :func:`check_keywords`, which also stops a misspelt option at
  once with the closest valid name;
- modules: ``lightning_callbacks.report`` and ``lightning_callbacks.figures`` are files of two lines
  that call :func:`moved_module`;
- functions: :data:`RENAMED_FUNCTIONS`, looked up by :func:`renamed_attribute` from a package's
  module-level ``__getattr__`` (``lightning_callbacks.functional``).

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
