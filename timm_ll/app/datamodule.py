"""The training data as a LightningDataModule: uint8 images held in memory, a class-balanced split, and the
recipe's augmentation (random crop after 4-pixel zero padding, horizontal flip) done on the device."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from timm_ll.app.data import ImageData
from timm_ll.app.recipe import BATCH_SIZE
from timm_ll.app.resident import DeviceBatches

__all__ = ["InMemoryImages", "ImageSourceDataModule", "random_crop_flip", "balanced_split", "balanced_subset"]


def random_crop_flip(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, batched on the images' device."""
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    rows = (dy + torch.arange(h, device=device))[:, :, None]
    cols = (dx + torch.arange(w, device=device))[:, None, :]
    out = padded[torch.arange(n, device=device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, device=device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def balanced_split(data: ImageData, train_size: int, val_size: int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Two disjoint, fixed, class-balanced subsets: (``train_size`` images, ``val_size`` images).

    Per class, a seeded permutation gives the first ``train_size // classes`` images to the first
    subset and the next ``val_size // classes`` to the second: a held-out part of the *training*
    split, for choosing a recipe without looking at the test set. The first subset does not depend
    on ``val_size`` (it is :func:`balanced_subset`'s).
    """
    gen = torch.Generator().manual_seed(seed)
    per_train, per_val = train_size // len(data.classes), val_size // len(data.classes)
    train_idx, val_idx = [], []
    for label in range(len(data.classes)):
        members = (data.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        if len(members) < per_train + per_val:
            raise ValueError(
                f"class {data.classes[label]!r} has {len(members)} images, fewer than the {per_train} + {per_val} "
                "asked for: ask for smaller subsets"
            )
        train_idx.append(members[:per_train])
        val_idx.append(members[per_train : per_train + per_val])

    def pick(parts: list[torch.Tensor]) -> ImageData:
        index = torch.cat(parts).sort().values
        return ImageData(data.images[index], data.labels[index], data.classes)

    return pick(train_idx), pick(val_idx)


def balanced_subset(data: ImageData, size: int, seed: int = 0) -> ImageData:
    """A fixed, class-balanced subset of ``size`` images (``size // classes`` per class)."""
    if size >= len(data):
        return data
    return balanced_split(data, size, 0, seed)[0]


class InMemoryImages(L.LightningDataModule):
    """uint8 images held in memory; batches stay uint8 until they reach the device, where they are
    augmented (random crop + flip, training only) and normalized.

    Args:
        train, test: the splits; None (both) with ``source``: loaded in ``setup``.
        source: a data source by name or path (:func:`timm_ll.app.data.load_source`), read when the
            Trainer sets the module up; instead of ``train`` and ``test``.
        train_subset: with ``source``, a fixed class-balanced subset of that many training images.
        batch_size: training batch size (evaluation uses twice as many).
        num_workers: DataLoader workers.
        mean, std: per-channel normalization in [0, 1] units (e.g. the model's ``pretrained_cfg``);
            None: the training images' own statistics.
        augment: random crop (4-pixel zero padding) + horizontal flip of training batches.
        resident: keep both splits on the Trainer's device and draw batches there
            (:class:`~timm_ll.app.resident.DeviceBatches`): no host collation and no copy per step,
            which is what holds a GPU back on 32x32 images. Costs the splits' uint8 size in device
            memory (150 MB for CIFAR-10); needs ``num_workers=0``.
    """

    def __init__(
        self,
        train: ImageData | None = None,
        test: ImageData | None = None,
        batch_size: int = BATCH_SIZE,
        num_workers: int = 0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: bool = True,
        resident: bool = False,
        source: str | None = None,
        train_subset: int | None = None,
    ) -> None:
        super().__init__()
        if (train is None) != (test is None) or (train is None) == (source is None):
            raise ValueError("give the splits as train= and test=, or a data source as source=, not both")
        if resident and num_workers:
            raise ValueError(
                f"resident=True with num_workers={num_workers}: device-resident batches need no loader "
                "workers; set num_workers=0"
            )
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.mean, self.std, self.resident = mean, std, resident
        self.source, self.train_subset = source, train_subset
        self.train_data = self.test_data = None
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        if train is not None and test is not None:
            self._set_data(train, test)

    def setup(self, stage: str) -> None:
        if self.train_data is None:
            from timm_ll.app.data import load_source

            train = load_source(self.source, "train")
            if self.train_subset:
                train = balanced_subset(train, self.train_subset)
            self._set_data(train, load_source(self.source, "test"))

    def _set_data(self, train: ImageData, test: ImageData) -> None:
        if train.classes != test.classes:
            raise ValueError(f"train and test classes differ: {train.classes} vs {test.classes}")
        self.train_data, self.test_data = train, test
        if self.mean is None or self.std is None:
            pixels = train.images.transpose(0, 1).reshape(train.images.shape[1], -1).double().div(255)
            self.mean = tuple(pixels.mean(1).tolist()) if self.mean is None else self.mean
            self.std = tuple(pixels.std(1).clamp_min(1e-3).tolist()) if self.std is None else self.std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and normalize uint8 images on the device; float batches pass unchanged."""
        images, labels = batch
        if images.dtype != torch.uint8:
            return images, labels
        images = images.float()
        if self.augment and self.trainer is not None and self.trainer.training:
            images = random_crop_flip(images)
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1) * 255
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1) * 255
        return (images - mean) / std, labels

    def _resident_batches(self, split: str, batch_size: int, train: bool) -> DeviceBatches:
        if self.trainer is None:
            raise RuntimeError(
                "resident=True draws batches on the Trainer's device: attach the DataModule to a Trainer"
            )
        device = self.trainer.strategy.root_device
        key = (split, str(device))
        if key not in self._on_device:  # one copy per split and device, kept for every later epoch and stage
            data = self.train_data if split == "train" else self.test_data
            self._on_device[key] = (data.images.to(device), data.labels.to(device))
        images, labels = self._on_device[key]
        return DeviceBatches(
            images,
            labels,
            batch_size,
            shuffle=train,
            drop_last=train,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        if self.resident:
            return self._resident_batches("train", self.batch_size, train=True)
        data = TensorDataset(self.train_data.images, self.train_data.labels)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self) -> DataLoader | DeviceBatches:
        if self.resident:
            return self._resident_batches("test", 2 * self.batch_size, train=False)
        data = TensorDataset(self.test_data.images, self.test_data.labels)
        return DataLoader(data, batch_size=2 * self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader()


class ImageSourceDataModule(InMemoryImages):
    """:class:`InMemoryImages` of a data source, by name or path; the LightningCLI's DataModule:
    ``data: {source: digits, batch_size: 128}``. The loader arguments are :class:`InMemoryImages`'s;
    ``mean``/``std`` default to the training images' statistics.
    """

    def __init__(self, source: str = "digits", *, train_subset: int | None = None, **loader: Any) -> None:
        super().__init__(None, None, source=source, train_subset=train_subset, **loader)
