"""Shared fixtures: deterministic seeds and the location of the shared CIFAR zip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CIFAR_ZIP = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
