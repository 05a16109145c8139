"""What the lean entry points import, read in one fresh interpreter (one start of torch, not one per test).

The steps run in order in that process and the watched modules are read after each: the set only grows,
so a module absent after a step was imported by none of the steps up to it, as it would be in a process
of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# a fresh interpreter that imports torch and timm: several seconds, in the full suite
pytestmark = pytest.mark.slow

WATCHED = ("lightning", "pytorch_lightning", "transformers", "sklearn", "scipy")
STEPS = {
    # the plugin: timm finds the models and timm-ll's export, without a training framework
    "plugin": "import timm, timm_ll, timm_ll.export\ntimm.create_model('ll_plain8')",
    # the framework-free measurer
    "measurer": "from lightning_callbacks import ShatteringMeasurer\n"
    "import lightning_callbacks.measure, lightning_callbacks.functional",
    # the default data ship with the package: no scikit-learn download
    "digits": "from timm_ll.app.data import load_source\nfacts['digits_size'] = len(load_source('digits', 'train'))",
}
SCRIPT = """
import json, sys
facts, watched = {}, %r
for name, code in %r.items():
    exec(code)
    facts[name] = sorted(m for m in watched if m in sys.modules)
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def facts() -> dict:
    """The watched modules present after each step, and what the steps measured."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT % (WATCHED, STEPS)], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_plugin_imports_no_training_framework(facts):
    assert facts["plugin"] == [], "importing timm-ll and creating a model imported " + ", ".join(facts["plugin"])


def test_importing_the_measurer_imports_no_training_framework(facts):
    assert facts["measurer"] == [], "importing the measurer imported " + ", ".join(facts["measurer"])


def test_the_default_data_needs_no_scikit_learn(facts):
    assert facts["digits"] == [], "loading the default data imported " + ", ".join(facts["digits"])
    assert facts["digits_size"] == 1437  # the UCI digits' training split, shipped with the package
