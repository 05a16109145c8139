"""Figures a person reads: named fitted laws, readable correlation ticks, labelled colorbars, flat gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_callbacks import functional as F
from lightning_callbacks.plotting import (
    plot_covariance,
    plot_depth_curves,
    plot_depth_profile,
    plot_gradient_traces,
)


def law_label(law, rate, r2, variable="depth"):
    return F.DecayFit(law, rate, r2).label(variable)


def test_fitted_law_is_named_with_its_rate():
    assert law_label("exponential", 0.035, 0.98) == "exponential law: c ~ exp(-0.035 depth), R² 0.98"
    assert law_label("power", 0.5, 0.9) == "power law: c ~ depth^-0.5, R² 0.90"
    # a profile's axis is the layer index, along which the correlation grows towards the output: said so
    grows = law_label("exponential", -0.00849, 0.95, variable="layer")
    assert grows == "exponential law: c ~ exp(+0.00849 layer) (rising), R² 0.95"
    assert law_label(None, float("nan"), float("nan")) == "no fit (fewer than 4 positive values)"


def test_a_fit_says_whether_it_holds_and_draws_itself_only_then():
    """Moved from plotting's fit helpers (fitted_law_curve, describe_fit, unfitted_note) to the fit's own type."""
    halving = F.fit_decay([1, 2, 3, 4], [0.8, 0.4, 0.2, 0.1])
    law, rate, r2 = halving  # unpacks as the triple fit_decay returned before
    assert halving.holds and law == "exponential" and rate == pytest.approx(math.log(2)) and r2 == pytest.approx(1)
    xs, ys = halving.curve(num=3)
    assert xs == [1, 2, 3, 4] and ys == pytest.approx([0.8, 0.4, 0.2, 0.1])
    assert halving.describe() == halving.label() and halving.legend() == halving.label()
    poor = F.fit_decay([1, 2, 3, 4, 5], [0.5, 0.1, 0.6, 0.05, 0.4])
    assert not poor.holds and poor.curve() is None and poor.describe().startswith("no law fits (best ")
    left_out = F.fit_decay([20, 56, 110, 200, 400], [0.9, 0.5, 0.25, 0.12, -0.012])
    assert left_out.holds and left_out.unfitted_note() == " (not fitted: depth 400 reads -0.012)"
    assert left_out.legend().endswith(left_out.unfitted_note()) and max(left_out.curve()[0]) == 200
    assert F.fit_decay([1, 2, 3, 4], [0.5] * 4).describe() == "constant: no decay with depth"


def test_plottings_old_fit_helpers_still_answer_with_a_warning():
    import lightning_callbacks.plotting as plotting

    with pytest.warns(DeprecationWarning, match="plotting.describe_fit is deprecated.*describe"):
        assert plotting.describe_fit("exponential", 0.5, 0.5).startswith("no law fits")
    with pytest.warns(DeprecationWarning, match="plotting.law_label"):
        assert plotting.law_label("power", 0.5, 0.9) == law_label("power", 0.5, 0.9)
    with pytest.warns(DeprecationWarning, match="plotting.MIN_R2"):
        assert plotting.MIN_R2 == F.MIN_R2 == 0.9
    with pytest.warns(DeprecationWarning, match="plotting.fitted_law_curve"):
        assert plotting.fitted_law_curve([1, 2, 3, 4], [0.8, 0.4, 0.2, 0.1], "exponential", math.log(2), 1.0, num=3)
    with pytest.raises(AttributeError, match="no attribute 'plot_nothing'"):
        plotting.plot_nothing  # noqa: B018


def test_three_points_are_too_few_for_a_two_parameter_law():
    assert F.fit_decay([20, 56, 110], [0.9, 0.6, 0.5])[0] is None
    assert F.fit_decay([20, 56, 110, 200], [0.9, 0.6, 0.5, 0.3])[0] in ("exponential", "power")


def test_values_far_from_zero_get_a_linear_axis_over_their_range():
    fig = plot_depth_curves({"post-LN": ([2, 8, 48], [0.979, 0.981, 0.977]), "MLP": ([2, 8, 48], [0.96, 0.9, 0.7])})
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    low, high = ax.get_ylim()
    assert 0.6 < low < 0.7 and 0.98 < high <= 1.15  # the data's range (and room for the legend), not 0 to 1


def test_correlation_axes_carry_readable_tick_labels_and_the_law_in_the_legend():
    fig = plot_depth_curves(
        {"plain": ([20, 56, 110], [0.5, 0.08, 0.004])}, fits={"plain": ([20, 110], [0.5, 0.004], "fit")}
    )
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"0", "0.01", "0.1", "1"} <= set(labels)
    profile = F.profile_from_correlations(list("abcd"), [0.8, 0.4, 0.2, 0.1])  # halves at every layer
    legend = [t.get_text() for t in plot_depth_profile(profile).axes[0].get_legend().get_texts()]
    assert any("exponential law: c ~ " in text for text in legend)


def test_families_with_the_same_values_stay_distinguishable():
    same = [0.99, 0.98, 0.98]
    fig = plot_depth_curves(
        {"post-LN": ([2, 8, 48], same), "pre-LN": ([2, 8, 48], same), "MLP": ([2, 8, 48], [0.9, 0.5, 0.1])}
    )
    lines = fig.axes[0].lines
    assert len({line.get_marker() for line in lines}) == 3
    # the second family's markers are smaller and hollow: the first family's show around them
    assert lines[1].get_markersize() < lines[0].get_markersize() and lines[0].get_markerfacecolor() == "none"


def _legend(profile) -> list[str]:
    return [t.get_text() for t in plot_depth_profile(profile).axes[0].get_legend().get_texts()]


def test_no_law_is_drawn_for_a_poor_fit_a_constant_profile_or_a_zero_rate():
    poor = F.profile_from_correlations(list("abcde"), [0.5, 0.1, 0.6, 0.05, 0.4])
    assert poor.r2 < 0.9
    fig = plot_depth_profile(poor)
    assert len(fig.axes[0].lines) == 2  # the profile and an empty legend entry: no law line
    assert any(text.startswith("no law fits") for text in _legend(poor))
    constant = F.profile_from_correlations(list("abcd"), [1.0] * 4)
    assert constant.law == "constant" and F.fit_decay([1, 2, 3, 4], [0.5] * 4)[0] == "constant"
    legend = _legend(constant)
    assert any("constant" in text for text in legend) and not any(" law: " in text for text in legend)
    assert any("flat" in t.get_text() for t in plot_depth_profile(constant).axes[0].texts)


def test_blocks_without_a_reading_are_marked_as_nan_with_their_status():
    profile = F.profile_from_correlations(["a", "b", "c", "d"], [0.9, float("nan"), 0.5, float("nan")])
    legend = _legend_of(plot_depth_profile(profile, status={"b": "missing", "d": "zero"}))
    assert "no reading (missing, zero): NaN" in legend


def _legend_of(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_the_heatmap_spaces_columns_by_step_and_greys_nan_cells():
    from lightning_callbacks.plotting import plot_block_heatmap

    history = [{"step": s, "layers": {"a": 0.9, "b": float("nan") if s == 0 else 0.5}} for s in (0, 1, 2, 5, 100, 1000)]
    fig = plot_block_heatmap(history)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    edges = mesh.get_coordinates()[0, :, 0]  # the column edges along the step axis
    widths = [
        ax.xaxis.get_transform().transform([b])[0] - ax.xaxis.get_transform().transform([a])[0]
        for a, b in zip(edges, edges[1:])
    ]
    # on the symlog axis the step-100 column spans from half way after 5 to half way before 1000: wider than
    # the step-2 column (between 1 and 5), where categories would make all six equal
    assert widths[4] > 3 * widths[2]
    assert bool(mesh.get_array().mask[1, 0])  # block b at step 0: no reading
    assert "NaN: no reading" in _legend_of(fig)


def test_covariance_has_a_labelled_colorbar_and_flat_gradients_say_so():
    fig = plot_covariance(torch.randn(16, 4).cumsum(0))
    assert fig.axes[-1].get_ylabel() == "|covariance| / max"
    flat = plot_covariance(torch.ones(16, 4) + 1e-17 * torch.randn(16, 4))
    assert len(flat.axes) == 1 and any("flat" in t.get_text() for t in flat.axes[0].texts)


def test_a_flat_trace_is_scaled_to_its_value_not_its_round_off():
    grads = torch.full((64, 1), 0.124251, dtype=torch.float32)
    grads[50] += 1e-7  # one point off by round-off: autoscaling would draw it as a deep spike
    ax = plot_gradient_traces(grads).axes[0]
    low, high = ax.get_ylim()
    assert high - low > 0.1  # the axis spans the value, so the round-off is invisible
    assert any("flat" in t.get_text() for t in ax.texts)
    shattered = plot_gradient_traces(torch.randn(64, 1)).axes[0]
    assert not any("flat" in t.get_text() for t in shattered.texts)
