"""The study scripts' logic on tiny presets (seconds, digits data); the studies themselves are not tests."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch

from tests.conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_sweep_scores_on_held_out_training_images_and_resumes(tmp_path):
    sweep = _load("recipe_sweep")
    from timm_ll.data import load_source

    data = load_source("digits", "train")
    train, val = sweep.split_train_val(data, 200, 100)
    assert len(train) == 200 and len(val) == 100
    assert torch.bincount(val.labels).tolist() == [10] * 10  # class-balanced
    # disjoint: no validation image is a training image
    flat_train = {tuple(img.flatten().tolist()) for img in train.images}
    assert not any(tuple(img.flatten().tolist()) in flat_train for img in val.images[:20])
    args = argparse.Namespace(
        preset="tiny", data="digits", lrs=[0.05, 0.1], warmups=[0.3], out=tmp_path, results=None, doc=False
    )
    rows = sweep.run_sweep(args)
    assert {(r["model"], r["lr"]) for r in rows} == {
        (m, lr) for m in ("ll_plain8", "cifar_resnet8") for lr in (0.05, 0.1)
    }
    assert all(0 <= r["val_error"] <= 1 and r["val_images"] == 100 for r in rows)
    lines = (tmp_path / "recipe_sweep_tiny.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["steps"] == 2
    assert sweep.run_sweep(args) == rows  # resumed: nothing is run again
    best = sweep.winners(rows)
    table = "\n".join(sweep.table(rows))
    for model, row in best.items():
        assert f"**{100 * row['val_error']:.1f}%**" in table and row["val_error"] == min(
            r["val_error"] for r in rows if r["model"] == model
        )
    with pytest.raises(ValueError, match="fewer than train"):
        sweep.split_train_val(data, 1400, 200)


def test_zoo_survey_measures_both_bn_modes_where_there_is_bn(tmp_path):
    zoo = _load("zoo_at_init")
    assert zoo.has_batch_norm("resnet18") and not zoo.has_batch_norm("vit_tiny_patch16_224")
    args = argparse.Namespace(preset="tiny", data="digits", out=tmp_path, doc=False)
    rows = zoo.survey(args)
    assert {(r["model"], r["bn_mode"]) for r in rows} == {
        ("resnet18", "eval"),
        ("resnet18", "batch"),
        ("vit_tiny_patch16_224", "eval"),
    }
    assert all(-1 <= r["neighbor_corr"] <= 1 and r["input_size"] == [3, 224, 224] for r in rows)
    table = zoo.table(rows)
    assert len(table) == 2 + 2 and table[2].split("|")[1].strip() in ("resnet18", "vit_tiny_patch16_224")
    corr = [float(line.split("|")[2]) for line in table[2:]]
    assert corr == sorted(corr, reverse=True)  # sorted, smoothest first
    assert len(zoo.figure(rows).axes) == 2
