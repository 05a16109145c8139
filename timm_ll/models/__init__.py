"""timm_ll model families; importing this package registers them in timm."""

from timm_ll.models.cifar import CIFAR10_MEAN, CIFAR10_STD, CifarNet, valid_depths
from timm_ll.models.skipfree_resnet import SkipFreeResNet

__all__ = ["CifarNet", "SkipFreeResNet", "CIFAR10_MEAN", "CIFAR10_STD", "valid_depths"]
