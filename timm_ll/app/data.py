"""Image data sources for the CLI: decoded once into uint8 tensors held in memory.

Sources (``load_source(spec, split)``):

- ``digits``: the UCI 8x8 handwritten digits shipped with the package, upscaled to 3x32x32 (no download).
- a CIFAR-10-style JPEG zip or folder laid out as ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
- an ImageFolder directory (``<class>/*.{jpg,png,...}``), the same images for every split.
- ``cifar10``: torchvision's CIFAR-10 under ``--data-root`` (downloads only where a network exists).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["ImageData", "load_source", "DataSourceError", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = "train/<class>/*.jpg and test/<class>/*.jpg (e.g. train/airplane/0001.jpg)"


class DataSourceError(ValueError):
    """A data source that is missing, corrupt or laid out wrongly; the message names the file and the fix."""


@dataclass
class ImageData:
    """Decoded images ``(N, C, H, W)`` uint8, integer labels ``(N,)`` and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]


# The 1,797 8x8 digits (values 0-16) of the UCI "Optical Recognition of Handwritten Digits" data set
# (Alpaydin & Kaynak, 1998; CC BY 4.0, https://doi.org/10.24432/C50P49), in the order scikit-learn's
# load_digits has them, shipped with the package (45 kB) so that the default run needs no download and
# no scikit-learn.
DIGITS_FILE = Path(__file__).with_name("digits.npz")


def _digits(split: str) -> ImageData:
    import numpy as np

    with np.load(DIGITS_FILE) as digits:
        pixels, targets = digits["images"], digits["labels"]
    images = torch.from_numpy(pixels).float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    images = images.mul(255).round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(targets).long()
    cut = int(0.8 * len(labels))  # fixed split: the data ships in a fixed order
    keep = slice(0, cut) if split == "train" else slice(cut, None)
    return ImageData(images[keep], labels[keep], [str(i) for i in range(10)])


def _decode(data: bytes, name: str) -> torch.Tensor:
    # Pillow rather than torchvision.io, whose image decoding is deprecated since torchvision 0.29
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise DataSourceError(f"cannot decode image {name}: {error}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _stack(items: list[tuple[str, torch.Tensor]], classes: list[str], where: str) -> ImageData:
    shapes = {tuple(img.shape) for _, img in items}
    if len(shapes) != 1:
        raise DataSourceError(f"images in {where} have different sizes {sorted(shapes)[:3]}; resize them to one size")
    labels = torch.tensor([classes.index(c) for c, _ in items])
    return ImageData(torch.stack([img for _, img in items]), labels, classes)


def _from_zip(path: Path, split: str) -> ImageData:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataSourceError(f"{path} is not a readable zip ({error}); expected a zip holding {LAYOUT}") from None
    with archive:
        entries = {}
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or not info.filename.lower().endswith(IMAGE_SUFFIXES):
                continue
            if split in parts and len(parts) >= 3 and parts[-3] == split:
                entries[info.filename] = parts[-2]
        if not entries:
            raise DataSourceError(f"{path} holds no images under {split}/<class>/; expected {LAYOUT}")
        classes = sorted(set(entries.values()))
        items = [(entries[n], _decode(archive.read(n), f"{path}:{n}")) for n in sorted(entries)]
    return _stack(items, classes, f"{path}:{split}/")


def _from_folder(root: Path) -> ImageData:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    items = [
        (d.name, _decode(f.read_bytes(), str(f)))
        for d in class_dirs
        for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise DataSourceError(
            f"{root} has no <class>/<image> files ({', '.join(IMAGE_SUFFIXES)}); expected an "
            f"ImageFolder layout or {LAYOUT}"
        )
    return _stack(items, [d.name for d in class_dirs], str(root))


def _torchvision_cifar10(split: str, root: Path) -> ImageData:
    from torchvision.datasets import CIFAR10

    try:
        data = CIFAR10(str(root), train=split == "train", download=True)
    except Exception as error:  # no network, or a broken cache
        raise DataSourceError(
            f"torchvision could not load or download CIFAR-10 into {root} ({type(error).__name__}: {error}). "
            "Without a network, point --data at a local copy laid out as " + LAYOUT
        ) from None
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, torch.tensor(data.targets), list(data.classes))


def load_source(spec: str, split: str = "train", data_root: str | Path = "~/.cache/timm-ll") -> ImageData:
    """Load a data source by name or path (see the module docstring).

    Raises:
        DataSourceError: missing, corrupt or wrongly laid-out source; the message names the
            file and the expected layout.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: use 'train' or 'test'")
    if spec == "digits":
        return _digits(split)
    if spec == "cifar10":
        return _torchvision_cifar10(split, Path(data_root).expanduser())
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataSourceError(
            f"data source {spec!r} is neither 'digits', 'cifar10' nor an existing path; "
            f"give a zip or folder laid out as {LAYOUT}, or an ImageFolder directory"
        )
    if path.is_file():
        return _from_zip(path, split)
    if (path / split).is_dir():
        return _from_folder(path / split)
    if (path / "train").is_dir() or (path / "test").is_dir():
        raise DataSourceError(f"{path} has no {split}/ folder; expected {LAYOUT}")
    return _from_folder(path)
