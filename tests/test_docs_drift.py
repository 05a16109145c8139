"""Every marked block of the docs is regenerated from the committed files (``docs/results`` and the JSON beside it)
by the script that wrote it, and must equal the committed text: no number in a block without its data."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("regenerate_docs", REPO / "examples" / "regenerate_docs.py")
regenerate_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regenerate_docs)

BLOCKS = regenerate_docs.committed_blocks()
RENDERERS = regenerate_docs.renderers()


def test_every_block_has_a_renderer_and_every_renderer_a_block():
    assert len(BLOCKS) >= 20, "the docs lost their marked blocks"
    assert set(BLOCKS) - set(RENDERERS) == set(), "blocks that no script's DOC_BLOCKS regenerates"
    assert set(RENDERERS) - set(BLOCKS) == set(), "renderers whose block is in no page"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_equals_its_regeneration_from_committed_data(name):
    page, committed = BLOCKS[name]
    script, render = RENDERERS[name]
    assert render().strip() == committed, (
        f"docs/{page.name} block {name!r} differs from what {script.relative_to(REPO)} renders from the committed "
        "data; run `python examples/regenerate_docs.py` (or the script with --doc) and commit"
    )


def test_a_changed_number_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: a block whose committed text has one digit changed is reported."""
    page = tmp_path / "PAGE.md"
    name = "zoo-at-init"
    text = BLOCKS[name][1]
    digit = next(i for i, c in enumerate(text) if c.isdigit() and i > text.index("|"))
    changed = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1 :]
    page.write_text(f"<!-- BEGIN {name} -->\n{changed}\n<!-- END {name} -->\n")
    monkeypatch.setattr(regenerate_docs, "PAGES", [page])
    assert regenerate_docs.main(["--check"]) == 1
    assert regenerate_docs.main([]) == 0
    assert regenerate_docs.committed_blocks()[name][1] == RENDERERS[name][1]().strip()


def test_publish_renders_the_block_from_the_written_file_not_from_memory(tmp_path):
    from timm_ll.app.reporting import publish, read_sections

    page, numbers = tmp_path / "PAGE.md", tmp_path / "results" / "speed.json"
    page.write_text("# Page\n\ntext before\n\n<!-- BEGIN speed -->\nold\n<!-- END speed -->\n\ntext after\n")

    def render(path):
        import json

        return f"speed {json.loads(path.read_text())['speed']}"  # NaN is written as null: the file is what counts

    assert publish(numbers, {"speed": float("nan")}, render, page, "speed") == "speed None"
    assert read_sections(page) == {"speed": "speed None"}
    assert "text before" in page.read_text() and "text after" in page.read_text()


def test_every_committed_figure_is_shown_by_a_page_and_every_shown_figure_exists():
    import re

    pages = [path.read_text() for path in regenerate_docs.PAGES]
    shown = {match for text in pages for match in re.findall(r"\]\((figures/[^)]+)\)", text)}
    committed = {str(path.relative_to(REPO / "docs")) for path in (REPO / "docs" / "figures").rglob("*.png")}
    assert committed, "no committed figures found"
    assert committed - shown == set(), "figures no page of docs/ shows"
    assert shown - committed == set(), "figures a page shows that are not committed"
