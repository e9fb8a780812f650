"""The data of the ``samples`` dataset (its options and registration are in :mod:`colorkit.plugins.samples`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset

from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.plugins.samples import SamplesOptions


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field")


def _load_photo(name: str) -> np.ndarray:
    from skimage import data, io
    from pathlib import Path

    if name.startswith("motorcycle_"):
        path = Path(data.__file__).parent / f"{name}.png"
        return io.imread(path)[..., :3]
    return getattr(data, name)()[..., :3]


def _to_tensor(img: np.ndarray, short: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    if short:
        h, w = t.shape[-2:]
        scale = short / min(h, w)
        t = F.interpolate(t[None], size=(round(h * scale), round(w * scale)), mode="area")[0]
    return t.round().clamp(0, 255).to(torch.uint8)


class _Crops(TorchDataset):
    def __init__(self, regions: list[torch.Tensor], size: int, n: int, train: bool, flip: bool, seed: int):
        self.regions, self.size, self.n, self.train, self.flip = regions, size, n, train, flip
        if not train:
            gen = torch.Generator().manual_seed(seed)
            self.fixed = [self._position(i % len(regions), gen) for i in range(n)]

    def _position(self, index: int, gen: torch.Generator | None) -> tuple[int, int, int]:
        region = self.regions[index]
        h, w = region.shape[-2:]
        y = int(torch.randint(0, h - self.size + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - self.size + 1, (1,), generator=gen))
        return index, y, x

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.train:
            r, y, x = self._position(i % len(self.regions), None)
        else:
            r, y, x = self.fixed[i]
        crop = self.regions[r][:, y : y + self.size, x : x + self.size]
        if self.train and self.flip and torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return crop.contiguous()


class Samples(Dataset):
    """scikit-image's colour photos (astronaut, coffee, chelsea, rocket, motorcycles, Hubble) as crops."""

    splits = ("train", "val", "test")

    def __init__(self, options: SamplesOptions) -> None:
        self.options = options
        self._regions: dict[str, list[torch.Tensor]] | None = None

    @property
    def size(self) -> int:
        return self.options.size

    def _load(self) -> dict[str, list[torch.Tensor]]:
        if self._regions is None:
            o = self.options
            regions: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
            for name in PHOTOS:
                t = _to_tensor(_load_photo(name), o.resize)
                h, w = t.shape[-2:]
                cut, mid = round(w * (1 - o.holdout)), h // 2
                parts = (("train", t[:, :, :cut]), ("val", t[:, :mid, cut:]), ("test", t[:, mid:, cut:]))
                for split, part in parts:
                    if min(part.shape[-2:]) < o.size:
                        raise UsageError(
                            f"dataset 'samples': dataset.size={o.size} is larger than the {split} "
                            f"region of photo '{name}' ({part.shape[-2]}x{part.shape[-1]}); raise "
                            "dataset.resize or lower dataset.size"
                        )
                    regions[split].append(part)
            self._regions = regions
        return self._regions

    def split(self, name: str, train: bool = False) -> TorchDataset:
        self.check_split(name)
        o = self.options
        n = o.crops_per_epoch if name == "train" else o.eval_crops
        if o.limit is not None:
            n = min(n, o.limit)
        return _Crops(self._load()[name], o.size, n, train, o.flip, o.seed)
