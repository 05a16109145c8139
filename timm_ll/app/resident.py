"""Batches drawn from image tensors kept on the accelerator, for small-image training on a GPU.

A CIFAR step of a 56-layer net takes milliseconds on a modern GPU; a ``DataLoader`` that
collates 128 images on the host and copies them over every step can take as long. Holding the
whole uint8 split on the device (150 MB for CIFAR-10's 50k images) and indexing it there
removes both. ``torch.utils.data.DataLoader`` cannot do this (its samplers and collation run on
the host), so this is a small iterable of our own; Lightning accepts any iterable with a length
as a dataloader.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["DeviceBatches"]


class DeviceBatches:
    """Batches ``(images[idx], labels[idx])`` of tensors that already sit on one device.

    Shuffling follows ``RandomSampler``: a new permutation every epoch (every ``iter()``), seeded by
    ``seed`` and the epoch, so that two runs with the same seed see the same batches. With
    ``world_size > 1`` each rank takes every ``world_size``-th index of the epoch's permutation (as
    ``DistributedSampler`` does), so the ranks share the data out; all ranks must use one ``seed``.

    Args:
        images, labels: the whole split, first dimension = samples, on the device to train on.
        batch_size: samples per batch.
        shuffle: a fresh permutation every epoch (training), else the stored order (evaluation).
        drop_last: drop the last, smaller batch.
        seed: the permutations' seed (None: ``torch.initial_seed()``, which ``seed_everything`` sets).
        rank, world_size: this process's share of the data.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels: give one label per image")
        if images.device != labels.device:
            raise ValueError(f"images on {images.device} but labels on {labels.device}: put both on one device")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use a positive batch size")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} with world_size={world_size}: need 0 <= rank < world_size")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed = torch.initial_seed() if seed is None else seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def _share(self) -> int:
        """Samples this rank sees an epoch (equal on every rank: the tail that does not divide is dropped)."""
        return self.images.shape[0] // self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self._share(), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = self.images.shape[0], self.images.device
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).to(device)
        else:
            order = torch.arange(n, device=device)
        self.epoch += 1
        order = order[self.rank :: self.world_size][: self._share()]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]
