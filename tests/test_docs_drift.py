"""Every marked block of the docs is regenerated from the committed files (``docs/results`` and the JSON beside it)
by the script that wrote it, and must equal the committed text: no number in a block without its data."""

from __future__ import annotations

import importlib.util
import json
import sys

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


_check_spec = importlib.util.spec_from_file_location("check_doc_numbers", REPO / "examples" / "check_doc_numbers.py")
check_doc_numbers = importlib.util.module_from_spec(_check_spec)
sys.modules["check_doc_numbers"] = check_doc_numbers  # its dataclass looks its module up there
_check_spec.loader.exec_module(check_doc_numbers)


def test_every_prose_number_is_in_its_named_source_or_a_listed_constant():
    mismatches = check_doc_numbers.check()
    assert mismatches == [], "\n".join(map(str, mismatches))


def test_an_edited_prose_number_is_caught(tmp_path):
    """The prose check itself can fail: on a real page with one quoted number changed, and on a page of its own."""
    commands = (REPO / "docs" / "COMMANDS.md").read_text()  # the train command's section quotes block `compile`
    assert "speeds a\ncifar_resnet56 step 1.30x" in commands or "cifar_resnet56 step 1.30x" in commands
    edited = tmp_path / "COMMANDS.md"
    edited.write_text(commands.replace("cifar_resnet56 step 1.30x", "cifar_resnet56 step 1.35x"))
    found = check_doc_numbers.check([edited])
    assert [m.number for m in found] == ["1.35x"] and "not in the sources" in found[0].why

    page = tmp_path / "PAGE.md"
    page.write_text(
        "# A page\n\nSources: block `compile`.\n\n"
        "A cifar_resnet56 step is 1.30x faster compiled, and 738.1 ms eager (the block's 738.08 rounds to it).\n"
        "A step is 1.3x faster (a rounding of 1.30), and 2.04x faster (in no source).\n\n"
        "## Unsourced\n\nIt took 12.5 s. Depth 110 and 3 seeds are configuration. ResNet-110 errs 6.43% (a listed "
        "constant). The block `no-such-block` is not there.\n"
    )
    found = {(m.number, m.why.split(" (")[0]) for m in check_doc_numbers.check([page])}
    assert found == {
        ("2.04x", "is not in the sources the sentence names"),
        ("12.5 s", "names no source"),
        ("block no-such-block", "is named but no page marks it"),
    }


@pytest.mark.parametrize(
    ("prose", "normalized"),
    [("0.54", "0.54"), (".54", "0.54"), ("1,701,530", "1701530"), ("+9.1", "9.1"), ("2.0", "2"), ("1.50", "1.5")],
)
def test_numbers_are_compared_after_the_stated_normalization(prose, normalized):
    assert check_doc_numbers.normalize(prose) == normalized


def test_a_raw_series_holds_a_prose_number_only_exactly_and_a_range_is_checked_at_both_ends(tmp_path):
    """A committed results file's scalars hold their roundings; its curves (lists of more than 16 items) do not,
    since thousands of full-precision floats would hold almost any rounded number. Real values of
    docs/results/depth_sweep_cpu-600-seeded.jsonl: cifar_resnet200 seed 1 has test loss 1.29028 (a scalar), and
    its logged batch loss peaks at 3.16147 (a curve)."""
    page = tmp_path / "PAGE.md"
    page.write_text(
        "# A page\n\nSources: `docs/results/depth_sweep_cpu-600-seeded.jsonl`.\n\n"
        "ResNet-200's seed-1 test loss is 1.290. Its batch loss peaks at 3.16 during the warm-up.\n\n"
        "## Ranges\n\nSources: block `compile`.\n\nA step is 1.30-2.04x faster.\n"
    )
    found = {m.number for m in check_doc_numbers.check([page])}
    assert found == {"3.16", "2.04x"}
    series = tmp_path / "series.json"
    series.write_text(json.dumps({"curve": [0.1 * i + 0.0123 for i in range(17)], "short": [0.4567] * 16}))
    source = check_doc_numbers.Source.of_file(series)
    assert "0.4567" in source.rounding_text and "0.0123" not in source.rounding_text
    assert "0.0123" in source.text  # a series still holds its own numbers exactly
    assert [n for n, _ in check_doc_numbers.numbers_in("0.78-0.87 at ResNet-110, 2-3 seeds")] == [
        "0.78",
        "0.87",
        "2",
        "3",
    ]


def test_a_number_is_held_only_in_its_own_unit(tmp_path):
    """A prose number with a unit is held where its source writes it bare (a table cell under the column's unit)
    or in the same unit, never in another: "1.5x longer" is not held by block `setup-times`' "(1.5 minutes)"."""
    block = check_doc_numbers.all_blocks()["setup-times"]
    assert "(1.5 minutes)" in block
    page = tmp_path / "PAGE.md"
    page.write_text(
        "# A page\n\nSources: block `setup-times`.\n\n"
        "The suites have taken up to 1.5x longer on other days.\n"
        "The fast tier's target is 1.5 minutes, or 1.5 min, and 90 s.\n"
    )
    found = [(m.number, m.why) for m in check_doc_numbers.check([page])]
    assert found == [("1.5x", "is not in the sources the sentence names in its unit, x (a source holds it in another)")]
    assert check_doc_numbers.unit_of("1.5 minutes") == check_doc_numbers.unit_of("1.5 min") == "min"
    assert check_doc_numbers.unit_of("2.04x") == "x" and check_doc_numbers.unit_of("0.54") == ""


def test_a_sentences_bare_number_holds_no_number_with_a_unit(tmp_path):
    """In a block, a bare number in a sentence (a loss of 1.18) is no value under a column's unit: it holds a bare prose
    number but not "1.18x"; a table cell, or a list after a declared unit ("Wall time per run (s):"), holds it."""
    source = (
        "Its last five logged losses average 1.18.\n\n| model | step / ResNet |\n|---|---|\n| a | 1.40 |\n\n"
        "Wall time per run (s): a 405, b 82.\n"
    )
    held = check_doc_numbers.source_numbers_with_units(source, markdown=True)
    assert ("1.18", check_doc_numbers.IN_A_SENTENCE) in held and ("1.4", "") in held and ("405", "s") in held
    by_unit = check_doc_numbers._numbers_of_sources((check_doc_numbers.Source.of_text(source),))
    holds = lambda raw, unit: check_doc_numbers.held_by(raw, *check_doc_numbers._held_in(by_unit, unit))  # noqa: E731
    assert holds("1.18", "") and not holds("1.18", "x")
    assert holds("1.40", "x") and holds("405", "s") and not holds("405", "x")
    # a JSON file's bare values stay values: they hold a number in any unit
    assert ("1.18", "") in check_doc_numbers.source_numbers_with_units('{"loss": 1.18}')
