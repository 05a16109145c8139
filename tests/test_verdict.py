"""The verdict: the first block where each failure shows, logged as indices and printed as one line at the end."""

from __future__ import annotations

import math

import pytest

from lightning_callbacks import BlockReading, ShatteringResult, verdict
from lightning_callbacks.verdict import COLLAPSED_TOKENS, MERGED_KERNEL, NOISE_CORR, NONE

nan = math.nan


def _result(readings: list[tuple[float, float, float]], step: int = 3) -> ShatteringResult:
    """Blocks b0, b1, ... in forward order with (neighbour correlation, forward kernel, token kernel)."""
    blocks = [
        BlockReading(f"b{i}", corr, "measured", kernel, 0.0, tokens, 0.5, "measured")
        for i, (corr, kernel, tokens) in enumerate(readings)
    ]
    return ShatteringResult(step=step, statistics={"neighbor_corr": (0.5, 0.1)}, blocks=blocks)


def test_each_failure_is_named_at_its_first_block_in_the_direction_its_signal_travels():
    found = verdict(
        _result(
            [
                (0.02, 0.5, 0.3),  # the input side: noise
                (0.05, 0.7, 0.9995),  # noise; tokens collapsed first here
                (0.4, 0.995, 0.99),  # the gradient is not noise yet here; the inputs merged first here
                (0.9, 0.999, 1.0),
                (1.0, 1.0, 1.0),  # the last block (a linear head follows): 1 by construction
            ]
        )
    )
    # the gradient travels back from the output: the first block on its way that reads noise is b1
    assert (found.shattered, found.inputs_merged, found.tokens_collapsed) == (1, 2, 1)
    assert found.scalars("s") == {
        "s/verdict/shattered": 1.0,
        "s/verdict/inputs_merged": 2.0,
        "s/verdict/tokens_collapsed": 1.0,
    }
    assert found.line() == (
        "verdict at step 3: gradients shattered from block 1 of 5 (b1) back to the input; inputs merged (forward "
        f"kernel >= {MERGED_KERNEL}) from block 2 of 5 (b2); tokens collapsed (token kernel >= {COLLAPSED_TOKENS}) "
        "from block 1 of 5 (b1)"
    )


def test_nothing_wrong_reads_none_and_blocks_without_a_reading_are_skipped():
    healthy = verdict(_result([(0.9, 0.5, 0.4), (nan, nan, nan), (0.8, 0.6, 0.5)]))
    assert (healthy.shattered, healthy.inputs_merged, healthy.tokens_collapsed) == (NONE, NONE, NONE) == (-1, -1, -1)
    assert healthy.line().endswith(
        "no gradient shattered; inputs told apart at every block; tokens distinct at every block"
    )
    # the thresholds are inclusive: a reading exactly at one counts
    edge = verdict(_result([(NOISE_CORR, MERGED_KERNEL, COLLAPSED_TOKENS)]))
    assert (edge.shattered, edge.inputs_merged, edge.tokens_collapsed) == (0, 0, 0)
    assert "no block readings" in verdict(ShatteringResult(step=0, statistics={})).line()


def test_the_report_logs_the_verdict_with_the_readings_and_a_failed_measurement_none():
    from lightning_callbacks.reporting import ResultReport

    report = ResultReport("shattering", "eval", "test")
    logged, _ = report(_result([(0.02, 0.995, 0.2), (0.9, 0.5, 0.2)]))
    assert logged["shattering/verdict/shattered"] == 0 and logged["shattering/verdict/inputs_merged"] == 0
    assert logged["shattering/verdict/tokens_collapsed"] == NONE
    failed, _ = report(ShatteringResult.failure(5, ["b0"], "RuntimeError: boom"))
    assert not any(key.startswith("shattering/verdict/") for key in failed)


@pytest.mark.slow  # a short Lightning fit
def test_a_lightning_fit_logs_the_verdict_and_prints_its_line_at_the_end(tmp_path, caplog):
    import logging

    from lightning_callbacks import ShatteringMonitor
    from tests.test_monitor import _fit

    monitor = ShatteringMonitor(every_n_steps=2, num_points=16, log_figures=False)
    with caplog.at_level(logging.INFO):
        _, trainer = _fit(tmp_path, monitor, steps=4)
    expected = f"shattering: {verdict(monitor.history[-1]).line()}"
    assert expected.startswith("shattering: verdict at step 4: ")
    assert expected in caplog.text
    assert trainer.callback_metrics["shattering/verdict/shattered"].item() == verdict(monitor.history[-1]).shattered


def test_timm_ll_shatter_prints_a_verdict_per_model(tmp_path, capsys):
    from timm_ll.app.cli import main

    assert (
        main(["shatter", "--families", "plain,ll_plain", "--depths", "20", "--num-points", "8", "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "ll_plain20: no gradient shattered; inputs told apart at every block; tokens distinct at every block" in out
    assert any(line.startswith("plain20: ") for line in out.splitlines())
