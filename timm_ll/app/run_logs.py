"""A run's logs: its loggers (CSV, and TensorBoard where installed) in one folder, its training curves read
back from the CSV file, and the earlier parts' files of a resumed run kept beside the later part's."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

__all__ = ["training_curves", "keep_earlier_metrics", "run_loggers"]


def training_curves(log_dir: str | Path) -> dict[str, list[float]]:
    """The run's training curves as the CSV logger wrote them: ``step``, ``loss`` and ``acc`` (of the
    training batch) and ``lr`` (the first parameter group's, from Lightning's ``LearningRateMonitor``)
    at every logged step, as parallel lists (a compact form for a results file)."""
    # a resumed run's earlier parts first (see :func:`keep_earlier_metrics`): a step that a later part logged
    # again (after the checkpoint it resumed from) takes the later part's values
    files = sorted(Path(log_dir).glob("metrics.part*.csv"), key=lambda f: int(f.stem.removeprefix("metrics.part")))
    by_step: dict[int, dict[str, float]] = {}
    for path in [*files, Path(log_dir) / "metrics.csv"]:
        with path.open() as handle:
            _merge_records(list(csv.DictReader(handle)), by_step)
    steps = [step for step in sorted(by_step) if "loss" in by_step[step]]
    return dict(
        step=steps,
        **{name: [by_step[step].get(name, math.nan) for step in steps] for name in ("loss", "acc", "lr")},
    )


def _merge_records(records: list[dict[str, str]], by_step: dict[int, dict[str, float]]) -> None:
    """Lightning writes one CSV row per logging call site and step: merge them by step into ``by_step``."""
    lr_key = next((key for key in (records[0] if records else {}) if key.startswith("lr-")), None)
    for record in records:
        entry = by_step.setdefault(int(record["step"]), {})
        for name, key in (("loss", "train/loss"), ("acc", "train/acc"), ("lr", lr_key)):
            if key and record.get(key):
                entry[name] = float(record[key])


def keep_earlier_metrics(log_dir: Path) -> None:
    """Lightning's CSV logger deletes a folder's ``metrics.csv`` when it starts: before a run resumes into its
    folder, keep the earlier part's file as ``metrics.part<N>.csv`` (read back by :func:`training_curves`)."""
    current = log_dir / "metrics.csv"
    if current.exists():
        parts = len(list(log_dir.glob("metrics.part*.csv")))
        current.rename(log_dir / f"metrics.part{parts}.csv")


def run_loggers(out_dir: str, name: str, version: str | None = None) -> list[Any]:
    """CSV and (where tensorboard is installed) TensorBoard loggers writing into one ``out_dir/name/version_N``
    folder (``out_dir/name/<version>`` where the run is named). TensorBoard is not a dependency of the lean
    install: without it the run logs CSV only."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    csv_logger = CSVLogger(out_dir, name=name, version=version)
    csv_logger.experiment  # noqa: B018  (creates the folder while it is empty: no "not empty" warning from CSV)
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        return [csv_logger]
    # TensorBoard takes the CSV logger's version: one folder per run, not version_0 and version_1
    return [csv_logger, TensorBoardLogger(out_dir, name=name, version=csv_logger.version, default_hp_metric=False)]
