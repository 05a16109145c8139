"""The measurer under ``torch.distributed`` without Lightning: two gloo ranks equal one process, sharded too."""

from __future__ import annotations

import math

import pytest

from tests.distributed_helpers import MODELS, Scenario, measure, run_two_ranks_once

# every scenario runs in one spawn of two ranks (the fixture below); each test checks its own
SCENARIOS: dict[str, Scenario] = {
    "plain": ("cifar", False, dict(num_lines=4, num_points=8)),
    # 3 lines on 2 ranks (2 + 1, padded to 2 + 2) in chunks of 5 points: every rank runs as many sharded
    # forwards (each gathers parameters collectively), or one would wait forever
    "sharded-cifar": ("cifar", True, dict(num_lines=3, num_points=8, chunk_size=5)),
    "sharded-gpt2": ("gpt2", True, dict(num_lines=3, num_points=8, chunk_size=5)),
    "sharded-batch-statistics": ("cifar", True, dict(num_lines=1, num_points=8, bn_mode="batch")),
    "sharded-through-monitor": ("cifar", True, dict(num_lines=3, num_points=8, chunk_size=5, through_monitor=True)),
    "failure-on-rank-1": ("cifar", False, dict(num_lines=4, num_points=8, fail_rank=1)),
}
# a measurement's all-reduces: the processes agree that none failed, label each block by the worst line of all,
# and sum the statistics
ALL_REDUCES = 3


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict[str, list[dict]]:
    return run_two_ranks_once(tmp_path_factory, SCENARIOS)


def test_every_rank_runs_as_many_probe_passes_as_the_busiest():
    from lightning_callbacks.distributed import rank_share

    assert rank_share(4, 0, 2) == ([0, 2], 0) and rank_share(4, 1, 2) == ([1, 3], 0)
    assert rank_share(3, 0, 2) == ([0, 2], 0) and rank_share(3, 1, 2) == ([1], 1)  # padded to two passes
    assert rank_share(1, 1, 2) == ([], 1) and rank_share(1, 0, 1) == ([0], 0)
    for lines in range(1, 9):
        for world in range(1, 5):
            shares = [rank_share(lines, rank, world) for rank in range(world)]
            assert sorted(i for share, _ in shares for i in share) == list(range(lines))  # each line once
            assert len({len(share) + pads for share, pads in shares}) == 1  # the same number of passes


def _single(name: str, options: dict) -> dict[str, float]:
    build, call = MODELS[name]
    return measure(build(), call(), options)


def _assert_equal(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


@pytest.mark.slow
def test_two_plain_ranks_split_the_lines_and_equal_one_process(two_ranks):
    ranks = two_ranks["plain"]
    _assert_equal(ranks[0]["scalars"], _single("cifar", SCENARIOS["plain"][2]))
    # every process gets the result, exactly (NaN where a block has no token axis)
    assert ranks[0]["scalars"] == pytest.approx(ranks[1]["scalars"], rel=0, abs=0, nan_ok=True)
    # 2 lines of 8 points each, in chunks of the batch size (8): two forwards on each rank
    assert ranks[0]["forwards"] == ranks[1]["forwards"] == 2
    # the statistics of every block are summed in one all-reduce, not synced metric by metric (torchmetrics'
    # own sync gathers each state of each metric: hundreds of collectives for this 8-block net)
    assert ranks[0]["collectives"] == ranks[1]["collectives"] == {"all_reduce": ALL_REDUCES, "all_gather": 0}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar", "gpt2"])
def test_fully_shard_with_uneven_lines_and_chunks_equals_one_process(two_ranks, name):
    ranks = two_ranks[f"sharded-{name}"]
    expected = _single(name, SCENARIOS[f"sharded-{name}"][2])
    _assert_equal(ranks[0]["scalars"], expected)
    _assert_equal(ranks[1]["scalars"], expected)
    assert ranks[0]["forwards"] == ranks[1]["forwards"]
    assert any("/neighbor_corr/" in key for key in expected)  # per block


@pytest.mark.slow
def test_fully_shard_with_batch_statistics_and_one_line_for_two_ranks(two_ranks):
    ranks = two_ranks["sharded-batch-statistics"]
    _assert_equal(ranks[0]["scalars"], _single("cifar", SCENARIOS["sharded-batch-statistics"][2]))
    assert ranks[0]["forwards"] == ranks[1]["forwards"] == 1


@pytest.mark.slow
def test_the_lightning_callbacks_measurement_path_under_fully_shard(two_ranks):
    ranks = two_ranks["sharded-through-monitor"]
    expected = _single("cifar", SCENARIOS["sharded-cifar"][2])  # the same options, measured directly
    _assert_equal(ranks[0]["scalars"], expected)
    _assert_equal(ranks[1]["scalars"], expected)


@pytest.mark.slow
def test_a_failure_on_one_rank_is_agreed_on_and_nobody_hangs(two_ranks):
    first, second = (rank["scalars"] for rank in two_ranks["failure-on-rank-1"])
    assert second["failed"] == [None, "RuntimeError: injected failure on rank 1", None]
    assert first["failed"][0] is None and first["failed"][2] is None
    assert first["failed"][1].startswith("MeasurementFailed: another process's measurement at step 1 failed")
    # and the next step measured on both, together (NaN where a block has no token axis)
    assert first["scalars"] == pytest.approx(second["scalars"], rel=0, abs=0, nan_ok=True)
    assert math.isfinite(first["scalars"]["shattering/neighbor_corr"])
