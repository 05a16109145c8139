"""Every Python snippet of the README and of ``docs/*.md``, found, and the small fixtures that give a snippet the
user's own objects it names (``model``, ``loader``, ``Trainer``...).

A page names a snippet's fixture in an HTML comment right above its code fence (invisible on GitHub):
``<!-- snippet: fixture=plain_loop -->``, and ``needs=cifar10`` for one that reads CIFAR-10 (skipped without it).
A snippet without a comment runs in an empty namespace, as a user would paste it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SNIPPET = re.compile(r"(?:<!-- snippet: ([^>]*?) -->\n)?```python\n(.*?)```", re.S)


@dataclass(frozen=True)
class Snippet:
    page: Path
    index: int  # the snippet's place among its page's Python snippets
    code: str
    fixture: str | None
    needs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.page.name}#{self.index}"


def snippets(pages: list[Path] = PAGES) -> list[Snippet]:
    found = []
    for page in pages:
        for index, match in enumerate(_SNIPPET.finditer(page.read_text())):
            options = dict(part.split("=", 1) for part in (match[1] or "").split() if "=" in part)
            needs = tuple(filter(None, options.get("needs", "").split(",")))
            found.append(Snippet(page, index, match[2], options.get("fixture"), needs))
    return found


def plain_loop(tmp_path: Path) -> dict[str, Any]:
    """A model called with dict batches that returns its loss first (as a Hugging Face model), its loader and
    optimizer: what the plain-loop snippet takes from the user's script."""
    import torch

    from tests.test_measurer import DictNet, _batches

    torch.manual_seed(0)
    model = DictNet()
    return dict(model=model, loader=_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def hf_trainer(tmp_path: Path) -> dict[str, Any]:
    """transformers' ``Trainer``, a tiny GPT-2 built from a config, two steps' ``TrainingArguments`` and token
    data with labels: what the Hugging Face snippets take from the user's script."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=96, n_positions=32))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, save_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    ids = torch.randint(0, 96, (16, 16), generator=torch.Generator().manual_seed(0))
    data = [dict(input_ids=row, attention_mask=torch.ones_like(row), labels=row) for row in ids]
    return dict(Trainer=Trainer, model=model, args=args, data=data)


def checkout(tmp_path: Path) -> dict[str, Any]:
    """A snippet run from the repository's root, as its text says: the committed ``weights/`` folder is there."""
    (tmp_path / "weights").symlink_to(REPO / "weights", target_is_directory=True)
    return {}


FIXTURES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "plain_loop": plain_loop,
    "hf_trainer": hf_trainer,
    "checkout": checkout,
}


def run(snippet: Snippet, tmp_path: Path) -> dict[str, Any]:
    """Run ``snippet`` as written, in its fixture's namespace; an unknown fixture is the page's mistake."""
    if snippet.fixture is not None and snippet.fixture not in FIXTURES:
        known = ", ".join(FIXTURES)
        raise KeyError(f"{snippet.name} names the fixture {snippet.fixture!r}; tests/doc_snippets.py has {known}")
    namespace = FIXTURES[snippet.fixture](tmp_path) if snippet.fixture else {}
    namespace["__name__"] = "__snippet__"
    exec(compile(snippet.code, snippet.name, "exec"), namespace)
    return namespace
