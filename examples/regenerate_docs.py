"""Regenerate every marked block of the docs from the committed data, without measuring anything.

    python examples/regenerate_docs.py           # rewrite the blocks that differ, and say which
    python examples/regenerate_docs.py --check   # only say which differ (exit status 1 if any)

Each script under ``examples/`` and ``benchmarks/`` that writes a block of ``docs/*.md`` names it in
its ``DOC_BLOCKS`` (block name -> a function rendering the block from ``docs/results`` and the JSON
beside it); ``tests/test_docs_drift.py`` fails when a committed block differs from its rendering.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the sibling scripts import timm_ll.app

from timm_ll.app.reporting import read_sections, write_section  # noqa: E402

PAGES = sorted((REPO / "docs").glob("*.md"))


def renderers() -> dict[str, tuple[Path, Callable[[], str]]]:
    """Block name -> (the script that writes it, its renderer); a name that two scripts claim is an error."""
    found: dict[str, tuple[Path, Callable[[], str]]] = {}
    scripts = [p for folder in ("examples", "benchmarks") for p in sorted((REPO / folder).glob("*.py"))]
    for path in scripts:
        if path == Path(__file__).resolve() or "DOC_BLOCKS" not in path.read_text():
            continue
        spec = importlib.util.spec_from_file_location(f"doc_blocks_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, render in module.DOC_BLOCKS.items():
            if name in found:
                raise ValueError(f"block {name!r} is rendered by both {found[name][0].name} and {path.name}")
            found[name] = (path, render)
    return found


def committed_blocks() -> dict[str, tuple[Path, str]]:
    """Block name -> (its page, its committed text), over every page of docs/."""
    blocks: dict[str, tuple[Path, str]] = {}
    for page in PAGES:
        for name, text in read_sections(page).items():
            if name in blocks:
                raise ValueError(f"block {name!r} is in both {blocks[name][0].name} and {page.name}")
            blocks[name] = (page, text)
    return blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block differs")
    args = parser.parse_args(argv)
    blocks, rendered = committed_blocks(), renderers()
    for name in sorted(set(blocks) - set(rendered)):
        print(f"{blocks[name][0].name}: block {name!r} has no renderer (no script's DOC_BLOCKS names it)")
    for name in sorted(set(rendered) - set(blocks)):
        print(f"{rendered[name][0].relative_to(REPO)} renders block {name!r}, which no page of docs/ marks")
    differ = 0
    for name, (page, text) in sorted(blocks.items()):
        if name not in rendered:
            continue
        try:
            new = rendered[name][1]().strip()
        except FileNotFoundError as missing:
            differ += 1
            print(f"{page.name}: block {name!r} has no committed data yet ({missing.filename}): run its script")
            continue
        if new != text:
            differ += 1
            print(f"{page.name}: block {name!r} differs from {rendered[name][0].relative_to(REPO)}'s rendering")
            if not args.check:
                write_section(page, name, new)
    return 1 if args.check and (differ or set(blocks) ^ set(rendered)) else 0


if __name__ == "__main__":
    sys.exit(main())
