import csv
import math
import warnings

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_callbacks import ShatteringMonitor
from tests.lightning_helpers import CountingMonitor, EndProcessGroup, loader, make_module

KEYS = ("neighbor_corr", "effective_rank", "stable_rank", "spectral_slope")


def _trainer(tmp_path, callbacks, steps=30, trainer_cls=L.Trainer, **kwargs):
    defaults = dict(
        default_root_dir=tmp_path,
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=1,
    )
    return trainer_cls(callbacks=callbacks, **(defaults | kwargs))


def _free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture
def fresh_port(monkeypatch):
    """A DDP run gets its own port: Lightning keeps the previous run's MASTER_PORT in the environment,
    and reusing it right after that run closed can abort the new process group."""
    return lambda: monkeypatch.setenv("MASTER_PORT", _free_port())


def _fit(tmp_path, monitor, steps=30, **kwargs):
    L.seed_everything(7, verbose=False)
    module = make_module(L.LightningModule)
    trainer = _trainer(tmp_path, [monitor] if monitor else [], steps, **kwargs)
    trainer.fit(module, loader())
    return module, trainer


def test_monitor_is_invisible_to_training(tmp_path):
    with_monitor, trainer = _fit(tmp_path / "a", ShatteringMonitor(every_n_steps=5, num_points=16, log_figures=False))
    rng_after_with = torch.get_rng_state()
    without, trainer_plain = _fit(tmp_path / "b", None)
    rng_after_without = torch.get_rng_state()
    assert trainer.callbacks[0].last_measurement  # it did measure
    for (name, a), (_, b) in zip(with_monitor.state_dict().items(), without.state_dict().items()):
        assert torch.equal(a, b), name  # weights and BN running statistics, bitwise
    opt_a = trainer.optimizers[0].state_dict()["state"]
    opt_b = trainer_plain.optimizers[0].state_dict()["state"]
    assert all(torch.equal(opt_a[k]["momentum_buffer"], opt_b[k]["momentum_buffer"]) for k in opt_a)
    assert torch.equal(rng_after_with, rng_after_without)


@pytest.mark.slow  # figures for two loggers; the fast tier keeps the PNG figures' test
def test_loggers_get_scalars_and_figures(tmp_path):
    monitor = ShatteringMonitor(every_n_steps=4, num_points=16)
    loggers = [TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")]
    _fit(tmp_path, monitor, steps=9, logger=loggers)
    rows = list(csv.DictReader(open(loggers[1].log_dir + "/metrics.csv")))
    logged = {k for row in rows for k, v in row.items() if v}
    for key in KEYS:
        assert f"shattering/{key}" in logged
    assert "shattering/neighbor_corr/0" in logged and "shattering/neighbor_corr/8" in logged
    # the log-spaced start (1, 2) before every_n_steps, then every 4 steps, and the trained net at the end
    assert sorted({int(r["step"]) for r in rows if r.get("shattering/neighbor_corr")}) == [0, 1, 2, 4, 8, 9]
    assert "shattering/neighbor_corr_std" in logged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(loggers[0].log_dir, size_guidance={"images": 0}).Reload()
    assert {
        "shattering/covariance",
        "shattering/gradient_traces",
        "shattering/depth_profile",
        "shattering/summary",
    } <= set(events.Tags()["images"])
    assert "shattering/neighbor_corr" in events.Tags()["scalars"]


@pytest.mark.slow  # draws every figure of a run
def test_the_summary_is_drawn_once_at_the_end_and_the_last_profile_is_reused(tmp_path, monkeypatch):
    import lightning_callbacks.plotting as plotting

    summaries, profiles = [], []
    draw_summary, draw_profile = plotting.plot_training_summary, plotting.plot_depth_profile
    monkeypatch.setattr(plotting, "plot_training_summary", lambda h: summaries.append(len(h)) or draw_summary(h))
    monkeypatch.setattr(plotting, "plot_depth_profile", lambda *a, **k: profiles.append(1) or draw_profile(*a, **k))
    monitor = ShatteringMonitor(every_n_steps=4, num_points=16)
    logger = TensorBoardLogger(tmp_path, name="tb")
    _fit(tmp_path, monitor, steps=5, logger=logger)
    # a depth profile per measurement (steps 0, 1, 2, 4 and the end), the last one reused for the PNG;
    # the cumulative summary once, over the whole history, for the loggers and the PNG alike
    assert len(profiles) == 5 and summaries == [5]
    assert (tmp_path / "tb" / "version_0" / "shattering" / "summary.png").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Images("shattering/summary")] == [5]
    assert [e.step for e in events.Images("shattering/depth_profile")] == [0, 1, 2, 4, 5]


def test_png_figures_are_a_bounded_set_and_callback_metrics_are_filled(tmp_path):
    monitor = ShatteringMonitor(every_n_steps=2, num_points=16)
    _, trainer = _fit(tmp_path, monitor, steps=7, logger=CSVLogger(tmp_path, name="csv"))
    pngs = sorted(p.name for p in (tmp_path / "csv" / "version_0" / "shattering").glob("*.png"))
    # measurements at steps 0, 1, 2, 4, 6 and the end (7): the latest PNGs, overwritten in place, and those at init
    figures = ("covariance", "depth_profile", "gradient_traces")
    assert pngs == sorted([f"{f}.png" for f in figures] + [f"{f}_init.png" for f in figures] + ["summary.png"])
    assert [e.step for e in monitor.history] == [0, 1, 2, 4, 6, 7]
    assert 0.0 < trainer.callback_metrics["shattering/effective_rank"].item() <= 16


def test_measure_at_end_can_be_turned_off(tmp_path):
    monitor = ShatteringMonitor(every_n_steps=2, num_points=16, log_figures=False, measure_at_end=False)
    _, trainer = _fit(tmp_path, monitor, steps=7)
    assert trainer.global_step == 7 and [e.step for e in monitor.history] == [0, 1, 2, 4, 6]


def test_resume_keeps_probe_and_schedule(tmp_path):
    monitor = ShatteringMonitor(every_n_steps=4, num_points=16, log_figures=False)
    _, trainer = _fit(tmp_path, monitor, steps=6, enable_checkpointing=True)
    ckpt = next((tmp_path).rglob("*.ckpt"))
    probe = monitor.measurer.probes()[0].clone()
    resumed = ShatteringMonitor(every_n_steps=4, num_points=16, log_figures=False)
    module = make_module(L.LightningModule)
    trainer2 = _trainer(tmp_path / "r", [resumed], steps=10)
    trainer2.fit(module, loader(seed=1), ckpt_path=ckpt)  # other data: the probe must still be the saved one
    assert torch.equal(resumed.measurer.probes()[0], probe)
    # 0, 1, 2 and 4 were measured before the checkpoint at step 6 (none repeated); then 8, and 10: the end
    assert [r.step for r in resumed.history] == [0, 1, 2, 4, 8, 10]


def test_pytorch_lightning_trainer(tmp_path):
    import pytorch_lightning as pl

    pl.seed_everything(0, verbose=False)
    monitor = ShatteringMonitor(every_n_steps=2, num_points=16, log_figures=False)
    trainer = _trainer(tmp_path, [monitor], steps=3, trainer_cls=pl.Trainer)
    trainer.fit(make_module(pl.LightningModule), loader())
    assert set(f"shattering/{k}" for k in KEYS) <= set(trainer.callback_metrics)


def _step0(tmp_path, **kwargs):
    monitor = ShatteringMonitor(every_n_steps=1000, num_points=16, log_figures=False, measure_at_end=False)
    L.seed_everything(3, verbose=False)
    module = make_module(L.LightningModule, compile_model=kwargs.pop("compile_model", False))
    _trainer(tmp_path, [monitor], steps=1, **kwargs).fit(module, loader())
    return monitor.last_measurement


def test_bf16_mixed_is_measured_in_float32(tmp_path):
    fp32 = _step0(tmp_path / "fp32")  # exactly (NaN where a block has no token axis)
    assert _step0(tmp_path / "bf16", precision="bf16-mixed") == pytest.approx(fp32, rel=0, abs=0, nan_ok=True)


def test_compiled_model_is_measured_through_the_original_forward(tmp_path):
    compiled = _step0(tmp_path / "c", compile_model=True)
    assert compiled == pytest.approx(_step0(tmp_path / "e"), nan_ok=True)  # a 2-d block has no token reading: NaN
    assert "shattering/neighbor_corr/0" in compiled  # layers found in the original module


class _OneHot(torch.nn.Module):
    """Token ids in, no nn.Embedding: nothing for the monitor to probe a line in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(10, 4)

    def forward(self, ids):
        return self.linear(torch.nn.functional.one_hot(ids, 10).float()).mean(1)


def test_integer_inputs_without_an_embedding_warn_clearly_and_training_goes_on(tmp_path):
    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _OneHot()

        def training_step(self, batch, batch_idx):
            ids, y = batch
            return torch.nn.functional.cross_entropy(self.model(ids), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ids = torch.randint(0, 10, (8, 5))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, torch.randint(0, 4, (8,))), batch_size=8)
    monitor = ShatteringMonitor(num_points=8, log_figures=False)
    with pytest.warns(UserWarning, match="no nn.Embedding ran.*embedding=.*forward_fn=.*Training goes on"):
        trainer = _trainer(tmp_path, [monitor], steps=2)
        trainer.fit(Module(), data)
    assert trainer.global_step == 2  # the fit ended as it would have
    assert all(r.failed for r in monitor.history) and math.isnan(monitor.last_measurement["shattering/neighbor_corr"])


def test_nan_gradients_warn_and_do_not_crash(tmp_path):
    monitor = ShatteringMonitor(
        every_n_steps=1, num_points=8, log_figures=False, readout=lambda out: out.sum(1) * float("nan")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, trainer = _fit(tmp_path, monitor, steps=2)
    warned = [str(w.message) for w in caught if "not finite" in str(w.message)]
    assert len([w for w in warned if "(NaN/Inf gradients)" in w]) == 1  # two measurements, one warning per key
    # and once, the cause: the output itself is not finite, with what to do about it
    diverged = [w for w in warned if "output on the probe" in w]
    assert len(diverged) == 1 and "bn_mode='batch'" in diverged[0]
    assert "shattering/neighbor_corr" not in trainer.callback_metrics


def test_a_flat_gradient_omits_its_spectral_slope_without_a_warning(tmp_path):
    import timm

    import timm_ll  # noqa: F401

    class Wrapped(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = timm.create_model("ll_plain8", num_classes=4, in_chans=3).double()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x.double()), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    monitor = ShatteringMonitor(every_n_steps=1000, num_points=16, log_figures=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(tmp_path, [monitor], steps=1).fit(Wrapped(), loader(dtype=torch.float64))
    assert not [w for w in caught if "ShatteringMonitor" in str(w.message)]
    assert monitor.last_measurement["shattering/neighbor_corr"] == 1.0
    assert "shattering/spectral_slope" not in monitor.last_measurement


def test_two_monitors_keep_separate_checkpoint_states():
    first = ShatteringMonitor(module="model", num_points=8)
    second = ShatteringMonitor(module="model", num_points=8, prefix="shattering_batch", bn_mode="batch")
    assert first.state_key != second.state_key and first.state_key.startswith("ShatteringMonitor")


def test_bad_configuration_is_refused_early(tmp_path):
    with pytest.raises(ValueError, match="every_n_steps"):
        ShatteringMonitor(every_n_steps=0)
    with pytest.raises(ValueError, match="bn_mode"):
        ShatteringMonitor(bn_mode="train")
    with pytest.raises(ValueError, match="not a submodule"):
        _fit(tmp_path, ShatteringMonitor(blocks=["99"]), steps=1)


@pytest.mark.slow  # one spawn of two ranks serves both monitors
def test_ddp_spawn_agrees_with_a_single_process_for_a_fixed_probe_and_for_lines_split_across_ranks(
    tmp_path, fresh_port
):
    """Two monitors in one run: a fixed probe, and lines from the batch (4 lines of 8 points, split across the
    ranks); under ddp_spawn each reads what a single process reads."""
    probe = torch.linspace(-1, 1, 16).view(16, 1, 1, 1).expand(16, 3, 8, 8).contiguous()
    prefixes = ("fixed_probe", "shattering")
    results, work = {}, {}
    for name, devices, strategy in (("single", 1, "auto"), ("ddp", 2, "ddp_spawn")):
        L.seed_everything(11, verbose=False)
        fresh_port()
        record = tmp_path / f"{name}.work"
        monitors = [
            ShatteringMonitor(every_n_steps=1000, probe=probe, log_figures=False, prefix=prefixes[0]),
            CountingMonitor(str(record), every_n_steps=1000, num_lines=4, num_points=8, log_figures=False),
        ]
        logger = CSVLogger(tmp_path, name=name)
        # every rank sees the same first batch, so the lines (built from rank 0's) equal the single process's
        trainer = _trainer(
            tmp_path / name,
            [*monitors, EndProcessGroup()],
            steps=2,
            devices=devices,
            strategy=strategy,
            logger=logger,
            use_distributed_sampler=False,
        )
        trainer.fit(make_module(L.LightningModule), loader())
        rows = list(csv.DictReader(open(f"{tmp_path}/{name}/version_0/metrics.csv")))
        for prefix in prefixes:
            row = next(r for r in rows if r.get(f"{prefix}/neighbor_corr"))
            results[name, prefix] = {k: float(v) for k, v in row.items() if k.startswith(f"{prefix}/") and v}
        work[name] = sorted(tuple(map(int, line.split())) for line in record.read_text().splitlines())
    for prefix in prefixes:
        assert f"{prefix}/neighbor_corr" in results["ddp", prefix]
        assert results["ddp", prefix] == pytest.approx(results["single", prefix], rel=1e-6, nan_ok=True)
    assert {"shattering/neighbor_corr_std", "shattering/neighbor_corr/0"} <= set(results["ddp", "shattering"])
    # steps 0, 1 and the end measured; 4 lines of 8 points: 32 points, or 16 on each of the two ranks
    assert work["single"] == [(0, 32)] * 3 and work["ddp"] == [(0, 16)] * 3 + [(1, 16)] * 3


def test_a_300_step_fit_sees_the_early_phase():
    from lightning_callbacks.measure import Schedule, early_steps

    assert early_steps(1000) == [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    options = ShatteringMonitor(num_points=8, log_figures=False).options  # the default schedule
    schedule = Schedule(options.every_n_steps, options.log_spaced_start)
    measured = [step for step in range(300) if schedule.due(step)]
    assert measured == [0, 1, 2, 5, 10, 20, 50, 100, 200] and len(measured) >= 8


class _Wrapped(L.LightningModule):
    """The README's pattern: a timm network as ``self.model``, and a ``forward``."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__()
        import timm

        import timm_ll  # noqa: F401

        self.model = timm.create_model(name, **kwargs)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _images(n: int, size: int, classes: int = 4):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=gen), torch.randint(0, classes, (n,), generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n)


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("ll_plain20", 32, [f"stages.{s}.{b}" for s in range(3) for b in range(3)]),
        pytest.param("vit_tiny_patch16_224", 224, [f"blocks.{i}" for i in range(12)], marks=pytest.mark.slow),
        ("resnet18", 64, [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]),
    ],
)
def test_the_readme_module_pattern_gives_a_depth_profile(tmp_path, name, size, expected):
    monitor = ShatteringMonitor(num_lines=2, num_points=4, log_figures=False)
    _trainer(tmp_path, [monitor], steps=1).fit(_Wrapped(name, num_classes=4), _images(4, size))
    at_init = monitor.history[0].entry()["layers"]
    assert monitor.history[0].step == 0 and set(expected) <= set(at_init)
    if name == "ll_plain20":  # linear at init: smooth at every block
        assert all(value == 1.0 for value in at_init.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "vit_small_patch16_224"])
def test_big_inputs_are_probed_in_chunks_of_the_training_batch(tmp_path, name):
    module = _Wrapped(name, num_classes=4)
    sizes: list[int] = []
    module.model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    monitor = ShatteringMonitor(num_lines=2, num_points=6, blocks=None, log_figures=False)
    _trainer(tmp_path, [monitor], steps=1).fit(module, _images(8, 224))
    assert "shattering/neighbor_corr" in monitor.last_measurement
    # 12 probe points in chunks of 8 (the training batch) at step 0 and at the end, and the training batch
    assert max(sizes) == 8 and sum(sizes) == 12 + 8 + 12


@pytest.mark.slow
def test_the_readme_snippet_itself_gives_a_depth_profile_at_init(tmp_path):
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    snippet = next(block for block in readme.split("```python")[1:] if "class Classifier" in block).split("```")[0]
    namespace: dict = {}
    exec(snippet.replace("trainer = L.Trainer(", "_unused = dict("), namespace)  # the module and the callback
    # as the snippet's monitor (its default blocks: every block), without the trained net's reading at the end, which
    # the profile at init does not need, and with a smaller probe than its default 4 lines x 64 points: an LL net's
    # blocks read exactly 1 on any line, and in float64 the default probe took most of the test's time
    monitor = ShatteringMonitor(measure_at_end=False, num_lines=2, num_points=16)
    # in float64: an LL net is exactly linear at init, but in float32 its cancelling halves leave round-off that
    # reads as a slightly rough gradient at some blocks, depending on the kernels (the CLI measures LL in float64)
    trainer = _trainer(tmp_path, [monitor], steps=1, precision="64-true")
    trainer.fit(namespace["Classifier"](), _images(8, 32, classes=10))
    profile = monitor.history[0].entry()["layers"]  # step 0
    assert len(profile) >= 27 and all(v == 1.0 for v in profile.values())  # ll_plain56: 27 blocks, linear at init


def test_an_unused_and_a_dead_branch_log_nan_with_a_warning_each(tmp_path):
    from tests.test_measurer import Branchy

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = Branchy()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)),
        batch_size=8,
    )
    monitor = ShatteringMonitor(blocks=["trunk", "unused", "dead"], num_points=8, log_figures=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer(tmp_path, [monitor], steps=3, logger=CSVLogger(tmp_path, name="csv"))
        trainer.fit(Module(), data)
    messages = [str(w.message) for w in caught if "ShatteringMonitor" in str(w.message)]
    assert len([m for m in messages if "block unused ran but does not reach" in m]) == 1  # 4 measurements, once
    assert len([m for m in messages if "block dead has a gradient of exactly zero" in m]) == 1
    assert not [m for m in messages if "(NaN/Inf gradients)" in m]
    assert monitor.history[-1].entry()["status"] == {"unused": "missing", "dead": "zero"}
    rows = list(csv.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    logged = [r for r in rows if r.get("shattering/neighbor_corr/trunk")]
    assert logged and all(r["shattering/neighbor_corr/dead"] == "nan" for r in logged)
    assert all(r["shattering/neighbor_corr/unused"] == "nan" for r in logged)


def test_the_schedule_counts_optimizer_steps_under_gradient_accumulation(tmp_path):
    monitor = ShatteringMonitor(every_n_steps=4, num_points=8, log_figures=False)
    _, trainer = _fit(tmp_path, monitor, steps=5, accumulate_grad_batches=2)  # 10 batches, 5 optimizer steps
    assert trainer.global_step == 5
    assert [r.step for r in monitor.history] == [0, 1, 2, 4, 5]  # once per due optimizer step, and the end
