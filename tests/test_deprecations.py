"""Renamed public names keep working with a DeprecationWarning that names the new spelling; misspelt ones stop
at once with the closest valid name (``lightning_callbacks.deprecations``, ``timm_ll.deprecations``)."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch import nn

from lightning_callbacks import ShatteringCallback, ShatteringMeasurer, ShatteringMonitor, ShatteringOptions


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("adapter", [ShatteringMonitor, ShatteringCallback])
def test_layers_keyword_works_with_a_warning_naming_blocks(adapter):
    with pytest.warns(DeprecationWarning, match=r"layers=.*use blocks="):
        callback = adapter(layers=["0", "2"])
    assert callback.options.blocks == ["0", "2"]


def test_measurer_takes_the_old_keyword_too():
    with pytest.warns(DeprecationWarning, match="use blocks="):
        measurer = ShatteringMeasurer(_net(), layers=["0"])
    assert measurer.block_names == ["0"]


@pytest.mark.parametrize(
    ("build", "suggestion"),
    [
        (lambda: ShatteringMonitor(evry_n_steps=10), "every_n_steps"),
        (lambda: ShatteringCallback(num_point=8), "num_points"),
        (lambda: ShatteringMeasurer(_net(), blcks=None), "blocks"),
        (lambda: ShatteringOptions(bn_mod="eval"), "bn_mode"),
    ],
)
def test_a_misspelt_option_names_the_closest_one(build, suggestion):
    with pytest.raises(TypeError, match=f"Did you mean '{suggestion}'"):
        build()


def test_old_and_new_name_together_is_refused():
    with pytest.raises(TypeError, match="keep blocks= only"):
        ShatteringMonitor(layers=["0"], blocks=["2"])


def test_options_object_names_the_new_spelling_of_an_old_name():
    with pytest.raises(TypeError, match="use blocks="):
        ShatteringOptions(layers=None)


def test_options_keep_their_signature_for_introspection():
    import inspect

    assert "every_n_steps" in inspect.signature(ShatteringOptions).parameters


def test_a_lightning_cli_config_with_layers_is_accepted_with_the_warning():
    """LightningCLI builds callbacks through jsonargparse, which reads the accepted keys from the signature and
    the source: a config written before the rename (``layers:``) still parses, and instantiating warns."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ShatteringMonitor, "monitor")
    config = parser.parse_object({"monitor": {"every_n_steps": 50, "layers": ["0"]}})
    assert "blocks" in config.monitor and "every_n_steps" in config.monitor  # the options are all known
    with pytest.warns(DeprecationWarning, match="use blocks="):
        monitor = parser.instantiate(config).monitor
    assert monitor.options.blocks == ["0"] and monitor.options.every_n_steps == 50
    untouched = parser.instantiate(parser.parse_object({"monitor": {"every_n_steps": 50}})).monitor
    assert untouched.options.blocks == "auto"  # a config without layers: gets no warning and the default


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("lightning_callbacks.report", "lightning_callbacks.reporting"),
        ("lightning_callbacks.figures", "lightning_callbacks.plotting.runs"),
        ("timm_ll.training", "timm_ll.app.training"),
        ("timm_ll.reporting", "timm_ll.app.reporting"),
        ("timm_ll.data", "timm_ll.app.data"),
        ("timm_ll.cli", "timm_ll.app.cli"),
        ("timm_ll.resident", "timm_ll.app.resident"),
    ],
)
def test_moved_modules_import_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"use {new} instead"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_renamed_functions_work_with_a_warning():
    import lightning_callbacks.functional as F

    with pytest.warns(DeprecationWarning, match="use lightning_callbacks.functional.auto_blocks"):
        assert F.auto_layers is F.auto_blocks
    with pytest.warns(DeprecationWarning, match="resolve_blocks"):
        assert F.resolve_layers is F.resolve_blocks
    with pytest.raises(AttributeError, match="did you mean 'auto_blocks'"):
        F.auto_blcks  # noqa: B018


def test_median_time_works_with_a_warning():
    from timm_ll.app import reporting

    with pytest.warns(DeprecationWarning, match="torch.utils.benchmark.Timer"):
        seconds = reporting.median_time(lambda: torch.zeros(3), repeats=3)
    assert seconds >= 0
