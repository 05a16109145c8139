"""Every Python snippet in the README and docs/ runs as written (a snippet cannot rot); see tests/doc_snippets.py."""

from __future__ import annotations

import os

import pytest

from tests.conftest import CIFAR_ZIP
from tests.doc_snippets import Snippet, run, snippets

# snippets that train or import transformers run in the full suite
_SLOW_FIXTURES = {"hf_trainer"}


def _param(snippet: Snippet):
    marks = [pytest.mark.slow] if snippet.fixture in _SLOW_FIXTURES else []
    return pytest.param(snippet, id=snippet.name, marks=marks)


def test_the_pages_have_snippets():
    names = [s.name for s in snippets()]
    assert "README.md#0" in names and any(name.startswith("MONITOR.md#") for name in names)


@pytest.mark.parametrize("snippet", [_param(s) for s in snippets()])
def test_snippet_runs_as_written(snippet: Snippet, tmp_path, monkeypatch):
    if "cifar10" in snippet.needs and not CIFAR_ZIP.exists():
        pytest.skip(f"{snippet.name} needs CIFAR-10 ({CIFAR_ZIP})")
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes (logs, figures) lands in the test's folder
    monkeypatch.setitem(os.environ, "MPLBACKEND", "Agg")
    run(snippet, tmp_path)


def test_a_broken_snippet_fails(tmp_path):
    page = tmp_path / "PAGE.md"
    page.write_text(
        "# A page\n\n```python\nimport timm\n\nmodel = timm.create_model('ll_plain56', num_clases=10)\n```\n\n"
        "<!-- snippet: fixture=no_such_fixture -->\n```python\nprint(model)\n```\n"
    )
    typo, unknown = snippets([page])
    assert typo.fixture is None and unknown.fixture == "no_such_fixture"
    with pytest.raises(TypeError):  # the misspelt keyword reaches the model
        run(typo, tmp_path)
    with pytest.raises(KeyError, match="no_such_fixture"):
        run(unknown, tmp_path)
