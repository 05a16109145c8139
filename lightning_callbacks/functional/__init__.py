"""Gradient-shattering measurements as pure torch functions (no Lightning), one concern a module.

Balduzzi et al. (2017) measure how the gradient of a network's output w.r.t. its input
changes between nearby inputs: along a line of inputs, the gradients of a deep feedforward
ReLU net decorrelate like white noise ("shatter"); a ResNet's or an LL net's do not.

- :mod:`~lightning_callbacks.functional.probes`: the probe lines and the scalar readout;
- :mod:`~lightning_callbacks.functional.outputs`: which part of any output type is measured;
- :mod:`~lightning_callbacks.functional.blocks`: the blocks of a depth profile;
- :mod:`~lightning_callbacks.functional.gradients`: the gradient engine (invisible to training);
- :mod:`~lightning_callbacks.functional.statistics`: correlation, ranks, spectrum, status;
- :mod:`~lightning_callbacks.functional.tokens`: the token kernel (how alike one input's tokens are);
- :mod:`~lightning_callbacks.functional.fits`: depth profiles and their decay laws.
"""

from lightning_callbacks.functional.blocks import auto_blocks, resolve_blocks, unwrap_compiled
from lightning_callbacks.functional.fits import (
    MIN_R2,
    DecayFit,
    DepthProfile,
    depth_profile,
    fit_decay,
    profile_from_correlations,
)
from lightning_callbacks.functional.gradients import (
    BNMode,
    InputGradients,
    buffer_copies,
    buffers_swapped,
    check_bn_mode,
    input_gradients,
    measurement_context,
)
from lightning_callbacks.functional.outputs import describe_output, per_sample_output
from lightning_callbacks.functional.probes import (
    RandomProjectionReadout,
    Readout,
    line_probe,
    random_projection_readout,
)
from lightning_callbacks.functional.statistics import (
    MEASURABLE,
    Status,
    autocorrelation,
    block_reading,
    effective_rank,
    endpoint_cosine,
    gradient_covariance,
    gradient_statistics,
    gradient_status,
    is_flat,
    neighbor_correlation,
    singular_values,
    spectral_slope,
    stable_rank,
)
from lightning_callbacks.functional.tokens import (
    TOKEN_LAYOUTS,
    TokenLayout,
    TokenReading,
    token_matrix,
    token_reading,
    token_readings,
    token_readings_of_lines,
)

__all__ = [
    "BNMode",
    "Readout",
    "Status",
    "MEASURABLE",
    "InputGradients",
    "DepthProfile",
    "line_probe",
    "random_projection_readout",
    "RandomProjectionReadout",
    "input_gradients",
    "check_bn_mode",
    "buffer_copies",
    "buffers_swapped",
    "measurement_context",
    "resolve_blocks",
    "per_sample_output",
    "describe_output",
    "gradient_statistics",
    "endpoint_cosine",
    "gradient_status",
    "block_reading",
    "is_flat",
    "autocorrelation",
    "neighbor_correlation",
    "gradient_covariance",
    "effective_rank",
    "stable_rank",
    "singular_values",
    "spectral_slope",
    "depth_profile",
    "profile_from_correlations",
    "fit_decay",
    "DecayFit",
    "MIN_R2",
    "auto_blocks",
    "unwrap_compiled",
    "TOKEN_LAYOUTS",
    "TokenLayout",
    "TokenReading",
    "token_matrix",
    "token_reading",
    "token_readings",
    "token_readings_of_lines",
]


def __getattr__(name: str):
    """Renamed functions keep working with a warning (``lightning_callbacks.deprecations``)."""
    from lightning_callbacks.deprecations import renamed_attribute

    return renamed_attribute(__name__, name)
