"""The docs' prose numbers against their sources: the drift check past the marked blocks.

    python examples/check_doc_numbers.py      # list every prose number that its source does not hold

A marked block is regenerated from its data (``examples/regenerate_docs.py``); the prose around the blocks
is written by hand, and is where stale numbers went before. This check reads the prose of ``README.md``
and every ``docs/*.md`` page (outside marked blocks, code fences and tables' data rows are kept: a table
in prose is prose) sentence by sentence:

- a sentence that names a source, a block (``block `name```, ``blocks `a` and `b```) or a committed file
  (a path such as ``docs/results/step_times.json``), must hold only numbers that appear in one of the
  sources it names; a section (the text under a heading, up to the next heading) can name the sources of
  all its sentences once, in a line that starts with ``Sources:``;
- a *measured* number (one with a decimal point or a thousands separator, or with a unit: %, x, s, ms,
  µs, min, MiB, GiB, GB, kB, points, seconds, minutes, hours) in a sentence that names no source must be listed in
  ``docs/constants.md`` with its source (the paper's own numbers, outside references), or go.
  Bare integers (depths, widths, counts of steps or seeds) are configuration, not measurements.

Numbers are compared after one normalization: thousands separators (a source's Python ``1_701_530`` too), a
leading sign and a unit go; a leading
zero is optional (0.54 and .54); trailing zeros after the point are dropped (2.0 and 2, 1.50 and 1.5); and a
source's longer number holds the prose's rounding of it (0.164 is held by 0.16443); a percentage is held by
its fraction too (5% by 0.05). A number with a unit is held only where its source writes it bare (a table
cell under its column's unit, a JSON value, a list after a declared unit such as "Wall time per run (s):") or
in the same unit: 1.5x is not held by "1.5 minutes", nor by a bare 1.5 in a sentence of a block (a loss).
Rounding holds only from a source's own figures: in a committed JSON file,
a list of more than 16 items (a curve, a series of readings) holds a prose number only exactly, since
thousands of full-precision floats would hold almost any rounded number by chance. Both ends of a range
(0.78-0.87) are numbers. A number in a name
(``ll_plain56``, ``H100``, ``cifar10``), a path, a code span (`` `eta=0.8` ``), a year (19xx, 20xx) or a date
(2026-11-30) is not a number.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from timm_ll.app.reporting import read_sections  # noqa: E402

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONSTANTS = REPO / "docs" / "constants.md"

_BLOCK = re.compile(r"<!-- BEGIN ([\w.-]+) -->.*?<!-- END \1 -->", re.S)
_FENCE = re.compile(r"```.*?```", re.S)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
# a block name right after "block"/"blocks" (and any further `name`s joined by commas / "and")
_BLOCK_REF = re.compile(r"\bblocks?\s+((?:`[\w.-]+`(?:,\s*|\s+and\s+|\s*/\s*)?)+)")
_PATH_REF = re.compile(r"`?((?:docs|benchmarks|examples|tests|timm_ll|lightning_callbacks)/[\w./-]+\.\w+)`?")
# a number not glued to a name: no letter, digit, underscore or path character before it, nor a hyphen after a
# letter (ResNet-110); after a digit's hyphen it is a range's second end (0.78-0.87), checked like the first
_NUMBER = re.compile(
    r"(?<![\w./,])(?<![A-Za-z_/.,]-)(?<!^-)([+\-−]?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)?(?:\.\d+)?)"
    r"(\s?(?:%|x\b|s\b|ms\b|µs\b|min\b|MiB\b|GiB\b|GB\b|kB\b|points?\b|seconds?\b|minutes?\b|hours?\b))?"
    r"(?![\w/]|\.\d)"  # nor a version's head (1.0 of 1.0.31)
)
_CODE = re.compile(r"`[^`]*`")
_YEAR = re.compile(r"(19|20)\d\d")  # a year (He et al. 2016) is a date, not a measurement
_DATE = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b")
# a sentence ends at . ! ? before a capital (or markup), at a blank line, or before a bullet; a table is one
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`(\[_])|\n\s*\n|\n(?=\s*[-*] )")


@dataclass(frozen=True)
class Mismatch:
    page: str
    number: str
    sentence: str
    why: str

    def __str__(self) -> str:
        return f"{self.page}: {self.number} {self.why}: {self.sentence[:160]!r}"


def normalize(number: str) -> str:
    """The comparable form of a number: no separator, sign or unit, no leading zero, no trailing zeros."""
    text = number.replace(",", "").replace("_", "").lstrip("+-−")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    text = text.lstrip("0") or "0"
    return text if not text.startswith(".") else "0" + text


def numbers_in(text: str) -> list[tuple[str, bool]]:
    """``(number, measured)`` for every number of ``text`` (see the module docstring for "measured")."""
    found = []
    for match in _NUMBER.finditer(text):
        value, unit = match.group(1), match.group(2)
        if not re.search(r"\d", value):
            continue
        measured = bool(unit) or "." in value or "," in value
        found.append((value + (unit or ""), measured))
    return found


# a unit's spellings, each to one name: a number is held only in its own unit (1.5x is not held by "1.5 minutes")
_UNITS = {"second": "s", "seconds": "s", "minute": "min", "minutes": "min", "point": "points", "hour": "hours"}
_SOURCE_NUMBER = re.compile(
    r"(\d{1,3}(?:[,_]\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)"
    r"(?:\s?(%|x\b|s\b|ms\b|µs\b|min\b|MiB\b|GiB\b|GB\b|kB\b|points?\b|seconds?\b|minutes?\b|hours?\b))?"
)


def unit_of(number: str) -> str:
    """The unit a prose number (or a source's) is written with, by one name; "" for none."""
    match = re.search(r"(%|x|s|ms|µs|min|MiB|GiB|GB|kB|points?|seconds?|minutes?|hours?)$", number.strip())
    unit = match.group(1) if match and re.search(r"\d\s?" + re.escape(match.group(1)) + "$", number) else ""
    return _UNITS.get(unit, unit)


def source_numbers(text: str) -> set[str]:
    """Every number a source holds, normalized (a source's numbers may sit in names: 'll_slim110' holds 110)."""
    return {number for number, _ in source_numbers_with_units(text)}


IN_A_SENTENCE = "sentence"  # the "unit" of a number written bare in a Markdown source's sentence


def source_numbers_with_units(text: str, markdown: bool = False) -> set[tuple[str, str]]:
    """``(number, unit)`` for every number a source holds: the unit written right after it, by one name ("" for
    none: a table cell under a column's unit, a JSON value, a number in a name). In a Markdown source (a block, a
    page) a number written bare outside a table is a count or a reading in a sentence, not a value under a column's
    unit: its unit is :data:`IN_A_SENTENCE`, which holds only prose numbers without a unit (a loss of 1.18 in a
    sentence does not hold "1.18x")."""
    found = set()
    for line in text.splitlines():
        bare = IN_A_SENTENCE if markdown and not line.lstrip().startswith("|") else ""
        declared = _DECLARED_UNIT.search(line) if markdown else None
        for m in _SOURCE_NUMBER.finditer(line):
            unit = m.group(2) or ""
            if not unit and declared and m.start() > declared.end():
                unit = declared.group(1)  # "Wall time per run (s): ll_plain20 175, ...": a list under its unit
            found.add((normalize(m.group(1)), _UNITS.get(unit, unit) if unit else bare))
    return found


# a Markdown line that declares the unit of the list after it, as a table's header does: "Wall time per run (s):"
_DECLARED_UNIT = re.compile(r"\((%|x|s|ms|µs|min|MiB|GiB|GB|kB|points|seconds|minutes|hours)\):")


def held_by(raw: str, held: frozenset[str], held_floats: list[float]) -> bool:
    """Whether a source holds the prose number ``raw`` (digits, separators and point only): exactly after
    normalization, or as a longer number that rounds to it at the prose's precision (0.164 and 67.0 are
    held by 0.16443 and 67.04; 1.5 is not held by 1.46)."""
    if normalize(raw) in held:
        return True
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    if decimals == 0:
        return False
    target, half = float(raw.replace(",", "")), 0.5 * 10**-decimals + 1e-12
    start = bisect.bisect_left(held_floats, target - half)
    return start < len(held_floats) and held_floats[start] <= target + half


def prose(page: Path) -> str:
    """The page's text outside marked blocks, code fences, images and link targets."""
    text = _BLOCK.sub("\n\n", page.read_text())
    text = _FENCE.sub("\n\n", text)
    text = _IMAGE.sub("", text)
    return _LINK_TARGET.sub("]", text)


def sentences(text: str) -> list[str]:
    return [" ".join(part.split()) for part in _SENTENCE_END.split(text) if part and part.strip()]


def all_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for page in PAGES:
        blocks.update(read_sections(page))
    return blocks


def constants() -> set[str]:
    """The allowlisted numbers: the first cell of every data row of docs/constants.md's table."""
    if not CONSTANTS.exists():
        return set()
    rows = [line for line in CONSTANTS.read_text().splitlines() if line.startswith("|") and "---" not in line]
    return {normalize(re.sub(r"[^\d.,]", "", row.split("|")[1].strip().split()[0])) for row in rows[1:]}


LONG_SERIES = 16  # a JSON list of more items than this is a series: its numbers hold prose numbers only exactly


@dataclass(frozen=True)
class Source:
    """A named source: all of its text (exact matches), and the part whose numbers a prose number may round."""

    text: str
    rounding_text: str
    markdown: bool = False  # its bare numbers outside tables are a sentence's (source_numbers_with_units)

    @classmethod
    def of_text(cls, text: str) -> Source:
        """A marked block (Markdown)."""
        return cls(text, text, markdown=True)

    @classmethod
    def of_file(cls, file: Path) -> Source:
        text = file.read_text()
        if file.suffix not in {".json", ".jsonl"}:
            return cls(text, text, markdown=file.suffix in {".md", ".txt"})
        documents = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if file.suffix == ".jsonl"
            else [json.loads(text)]
        )
        return cls(text, json.dumps([_without_series(d) for d in documents]))


def _without_series(value: Any) -> Any:
    """``value`` with every list of more than ``LONG_SERIES`` items (a curve, a series of readings) emptied."""
    if isinstance(value, dict):
        return {key: _without_series(item) for key, item in value.items()}
    if isinstance(value, list):
        return [] if len(value) > LONG_SERIES else [_without_series(item) for item in value]
    return value


def sources_of(sentence: str, blocks: dict[str, str]) -> tuple[list[Source], list[str]]:
    """The sources ``sentence`` names, and the names it gives that are no source."""
    found, unknown = [], []
    for group in _BLOCK_REF.findall(sentence):
        for name in re.findall(r"`([\w.-]+)`", group):
            (found.append(Source.of_text(blocks[name])) if name in blocks else unknown.append(f"block {name}"))
    for path in _PATH_REF.findall(sentence):
        file = REPO / path
        page = file.suffix == ".md" and file.parent == REPO / "docs"  # a page's sources are its blocks, not its prose
        if file.is_file() and not page and file.suffix in {".json", ".jsonl", ".md", ".txt", ".py", ".sh", ".toml"}:
            found.append(_file_source(file, file.stat().st_mtime_ns))
    return found, unknown


@functools.cache
def _file_source(file: Path, mtime_ns: int) -> Source:
    """A file's source, parsed once per version of the file (a section names its sources in many sentences)."""
    return Source.of_file(file)


_HEADING = re.compile(r"^#{1,6} .*$", re.M)
_SOURCES_LINE = re.compile(r"^\**Sources:\**.*$", re.M)


def sections(text: str) -> list[tuple[str, str]]:
    """``(sources line, body)`` of every section of ``text`` (split at headings; the line may be empty)."""
    found = []
    for body in _HEADING.split(text):
        line = _SOURCES_LINE.search(body)
        found.append((line.group(0) if line else "", _SOURCES_LINE.sub("", body)))
    return found


def check(pages: list[Path] | None = None) -> list[Mismatch]:
    """Every prose number of ``pages`` that its named source does not hold, or that is measured and unsourced."""
    blocks, allowed, mismatches = all_blocks(), constants(), []
    for page in pages or PAGES:
        name = page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else page.name
        if page == CONSTANTS:
            continue
        for section_sources, body in sections(prose(page)):
            mismatches += _check_section(name, section_sources, body, blocks, allowed)
    return mismatches


def _check_section(name: str, section_sources: str, body: str, blocks: dict, allowed: set[str]) -> list[Mismatch]:
    """One section's sentences against their own sources and the section's ``Sources:`` line."""
    section_texts, unknown = sources_of(section_sources, blocks)
    mismatches = [Mismatch(name, m, section_sources, "is named but no page marks it") for m in unknown]
    for sentence in sentences(body):
        own_texts, unknown = sources_of(sentence, blocks)
        mismatches += [Mismatch(name, m, sentence, "is named but no page marks it") for m in unknown]
        texts = (*own_texts, *section_texts)
        by_unit = _numbers_of_sources(texts)
        # a code span's numbers are code; a date (2026-11-30) is a date, not three numbers
        for number, measured in numbers_in(_DATE.sub(" ", _CODE.sub(" ", sentence))):
            raw = re.sub(r"[^\d.,]", "", number).strip(".,")
            if normalize(raw) in allowed or _YEAR.fullmatch(raw):
                continue
            # a number with a unit is held where the source writes it bare or in that unit, not in another unit;
            # a percentage is also held as a fraction (5% by a source's 0.05)
            unit = unit_of(number)
            held, held_floats = _held_in(by_unit, unit)
            as_fraction = normalize(f"{float(raw.replace(',', '')) / 100:.10f}") if unit == "%" else None
            if texts and not held_by(raw, held, held_floats) and as_fraction not in held:
                why = "is not in the sources the sentence names"
                if unit and held_by(raw, *_held_in(by_unit, None)):
                    why += f" in its unit, {unit} (a source holds it in another)"
                mismatches.append(Mismatch(name, number, sentence, why))
            elif not texts and measured:
                mismatches.append(Mismatch(name, number, sentence, "names no source (and is no listed constant)"))
    return mismatches


@functools.cache
def _numbers_of_sources(sources: tuple[Source, ...]) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """The numbers of ``sources`` together, by the unit written after them ("" for none): ``unit -> (exact,
    roundable)``, normalized (cached: a section reuses its sources)."""
    exact: dict[str, set[str]] = defaultdict(set)
    rounding: dict[str, set[str]] = defaultdict(set)
    for source in sources:
        numbers = source_numbers_with_units(source.text, source.markdown)
        # a block or a non-JSON file rounds all it holds; a JSON file's long series hold numbers only exactly
        roundable = numbers if source.rounding_text == source.text else source_numbers_with_units(source.rounding_text)
        for number, unit in numbers:
            exact[unit].add(number)
        for number, unit in roundable:
            rounding[unit].add(number)
    return {unit: (frozenset(exact[unit]), frozenset(rounding[unit])) for unit in exact.keys() | rounding.keys()}


def _held_in(by_unit: dict[str, tuple[frozenset[str], frozenset[str]]], unit: str | None) -> tuple[frozenset, list]:
    """What holds a prose number written in ``unit``: the numbers written bare (in a table or a JSON value) or in
    that unit (a bare prose number, ``""``, is held by any, a sentence's bare numbers too; ``None``: every number,
    whatever its unit)."""
    units = by_unit.keys() if unit in ("", None) else {"", unit} & by_unit.keys()
    exact = frozenset().union(*(by_unit[u][0] for u in units))
    return exact, sorted(float(v) for v in frozenset().union(*(by_unit[u][1] for u in units)))


def main() -> int:
    found = check()
    for mismatch in found:
        print(mismatch)
    print(f"{len(found)} prose number(s) without their source")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
