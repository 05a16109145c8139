"""timm_ll model families; importing this package registers them in timm."""

from timm_ll.models.cifar import CIFAR10_MEAN, CIFAR10_STD, CifarNet, valid_depths

__all__ = ["CifarNet", "CIFAR10_MEAN", "CIFAR10_STD", "valid_depths"]
