"""timm-ll: looks-linear (LL) skip-free networks (Balduzzi et al., ICML 2017) for timm.

Importing this package registers every model in timm's registry, so that
``timm.create_model("ll_plain56")`` works. After a regular ``pip install`` an import hook
does that import for you the moment ``timm`` is imported (see ``_timm_ll_autoregister``).
"""

from timm_ll.convert import LooksLinearError, make_looks_linear
from timm_ll.init import init_looks_linear_, looks_linear_, mirror_weight_, orthogonal_, tat_gain, tat_slope
from timm_ll.layers import (
    CReLU,
    CReLUConv1d,
    CReLUConv2d,
    CReLUConv3d,
    TATLeakyReLU,
    crelu,
    crelu_recompute,
    set_crelu_recompute,
)
from timm_ll.models import CIFAR10_MEAN, CIFAR10_STD, CifarNet, SkipFreeResNet, valid_depths

__version__ = "0.1.0"

__all__ = [
    "CReLU",
    "CReLUConv1d",
    "CReLUConv2d",
    "CReLUConv3d",
    "crelu_recompute",
    "set_crelu_recompute",
    "init_looks_linear_",
    "make_looks_linear",
    "LooksLinearError",
    "crelu",
    "looks_linear_",
    "orthogonal_",
    "mirror_weight_",
    "tat_slope",
    "tat_gain",
    "TATLeakyReLU",
    "CifarNet",
    "SkipFreeResNet",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "valid_depths",
    "__version__",
]
