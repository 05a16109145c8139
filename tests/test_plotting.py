"""Figures a person reads: named fitted laws, readable correlation ticks, labelled colorbars, flat gradients."""

from __future__ import annotations

import torch

from lightning_callbacks import functional as F
from lightning_callbacks.plotting import law_label, plot_covariance, plot_depth_curves, plot_depth_profile


def test_fitted_law_is_named_with_its_rate():
    assert law_label("exponential", 0.035, 0.98) == "exponential law: c ~ exp(-0.035 depth), R² 0.98"
    assert law_label("power", 0.5, 0.9) == "power law: c ~ depth^-0.5, R² 0.90"
    assert law_label("exponential", -0.01, 0.5).startswith("exponential law: c ~ exp(0.01 depth)")


def test_correlation_axes_carry_readable_tick_labels_and_the_law_in_the_legend():
    fig = plot_depth_curves(
        {"plain": ([20, 56, 110], [0.5, 0.08, 0.004])}, fits={"plain": ([20, 110], [0.5, 0.004], "fit")}
    )
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"0", "0.01", "0.1", "1"} <= set(labels)
    profile = F.depth_profile({str(i): torch.randn(16, 4).cumsum(0) for i in range(4)})
    legend = [t.get_text() for t in plot_depth_profile(profile).axes[0].get_legend().get_texts()]
    assert any(" law: c ~ " in text for text in legend)


def test_covariance_has_a_labelled_colorbar_and_flat_gradients_say_so():
    fig = plot_covariance(torch.randn(16, 4).cumsum(0))
    assert fig.axes[-1].get_ylabel() == "|covariance| / max"
    flat = plot_covariance(torch.ones(16, 4) + 1e-17 * torch.randn(16, 4))
    assert len(flat.axes) == 1 and any("flat" in t.get_text() for t in flat.axes[0].texts)
