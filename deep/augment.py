"""Training batches made on the device from a resident uint8 dataset, whole batches at a time.

The dataset lives on the training device as uint8 images (N, H, W, C); nothing is transformed
per sample in Python. Per step: gather the batch, random crop with zero padding and random
horizontal flip as one gather, convert to float and normalise, mixup; the result is a
(B, C, H, W) tensor in channels_last memory order (a permuted view of NHWC storage, no copy).

Randomness comes from two generators owned by the stream and saved with every checkpoint:
`order` (CPU, the same seed on every process) draws the epoch's permutation and the mixup
weights, so that all processes agree on the global batches; `augment` (on the device, one seed
per process) draws crops, flips and mixup partners.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import Tensor

from deep.seeds import derive_seed

__all__ = [
    "Normalizer",
    "TrainBatch",
    "TrainStream",
    "beta_quantile",
    "crop_flip",
    "eval_batches",
]


@dataclass(frozen=True)
class Normalizer:
    """x = (u8 - mean) / std per channel, written x = u8 * scale + shift; scale, shift (C,)."""

    scale: Tensor
    shift: Tensor

    @classmethod
    def from_images(cls, images: Tensor) -> Normalizer:
        """Per-channel mean and std (population) of uint8 images (N, H, W, C), from histograms."""
        channels = images.shape[-1]
        values = torch.arange(256, dtype=torch.float64)
        hist = torch.stack(
            [
                torch.bincount(images[..., c].reshape(-1).cpu(), minlength=256)
                for c in range(channels)
            ]
        ).to(torch.float64)  # (C, 256)
        count = hist.sum(1)
        mean = hist @ values / count
        var = hist @ values**2 / count - mean**2
        std = var.clamp_min(0).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays as is
        return cls((1.0 / std).float(), (-mean / std).float())

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.scale.to(device), self.shift.to(device))

    def __call__(self, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """uint8 (B, H, W, C) -> normalised (B, H, W, C) of `dtype`."""
        return images.to(dtype) * self.scale.to(dtype) + self.shift.to(dtype)


def crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop of zero-padded images and random horizontal flip, as one gather.

    images (B, H, W, C) uint8 -> (B, H, W, C): sample i is the H x W window at offset
    (dy_i, dx_i) in {0..2p}^2 of the image padded by p on each side, mirrored left-right with
    probability 1/2 when `flip`.
    """
    if padding == 0 and not flip:
        return images
    b, h, w, _ = images.shape
    dev = images.device
    padded = F.pad(images, (0, 0, padding, padding, padding, padding))  # (B, H+2p, W+2p, C)
    dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator, device=dev)
    rows = dy + torch.arange(h, device=dev)  # (B, H)
    cols = dx + torch.arange(w, device=dev)  # (B, W)
    if flip:
        mirrored = torch.rand(b, 1, generator=generator, device=dev) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)


def beta_quantile(alpha: float, u: np.ndarray) -> np.ndarray:
    """Beta(alpha, alpha) samples by inversion of uniforms u in [0, 1): the mixup weights."""
    return scipy.special.betaincinv(alpha, alpha, u)


@dataclass(frozen=True)
class TrainBatch:
    """Images x (B, C, H, W), labels y_a and mixup partners y_b (B,), weight lam of y_a."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float


class TrainStream:
    """One epoch of augmented, shuffled training batches per call of `epoch()`.

    The global batch of `batch_size` images is split evenly across `world` processes; the
    last incomplete batch is dropped (a new permutation each epoch leaves none out for good).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        normalizer: Normalizer,
        crop_padding: int = 0,
        flip: bool = False,
        mixup_alpha: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        channels_last: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        _check_stream(len(images), batch_size, world, crop_padding, mixup_alpha)
        self.images, self.labels = images, labels
        self.batch_size, self.local = batch_size, batch_size // world
        self.normalizer = normalizer.to(images.device)
        self.crop_padding, self.flip, self.mixup_alpha = crop_padding, flip, mixup_alpha
        self.rank, self.channels_last, self.dtype = rank, channels_last, dtype
        self.order = torch.Generator().manual_seed(derive_seed(seed, "order"))
        self.augment = torch.Generator(images.device).manual_seed(
            derive_seed(seed, "augment", rank)
        )

    @property
    def steps_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def epoch(self) -> Iterator[TrainBatch]:
        steps = self.steps_per_epoch
        perm = torch.randperm(len(self.images), generator=self.order)
        u = torch.rand(steps, generator=self.order, dtype=torch.float64).numpy()
        lams = beta_quantile(self.mixup_alpha, u) if self.mixup_alpha > 0 else np.ones(steps)
        perm = _to_device(perm, self.images.device)
        for step in range(steps):
            start = step * self.batch_size + self.rank * self.local
            yield self._batch(perm[start : start + self.local], float(lams[step]))

    def _batch(self, idx: Tensor, lam: float) -> TrainBatch:
        images = crop_flip(self.images[idx], self.crop_padding, self.flip, self.augment)
        x = self.normalizer(images, self.dtype)  # (B, H, W, C)
        y = self.labels[idx]
        y_b = y
        if lam != 1.0:
            partner = torch.randperm(len(idx), generator=self.augment, device=x.device)
            x = lam * x + (1.0 - lam) * x[partner]
            y_b = y[partner]
        return TrainBatch(_to_nchw(x, self.channels_last), y, y_b, lam)

    def state_dict(self) -> dict[str, Tensor]:
        return {"order": self.order.get_state(), "augment": self.augment.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.order.set_state(state["order"])
        self.augment.set_state(state["augment"])


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on `device`; to a GPU from pinned memory, so that the host does not wait."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _to_nchw(x: Tensor, channels_last: bool) -> Tensor:
    """(B, H, W, C) -> (B, C, H, W): a channels_last view, or a contiguous copy."""
    x = x.permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()


def _check_stream(n: int, batch_size: int, world: int, padding: int, alpha: float) -> None:
    if batch_size < 2 or batch_size % world:
        raise ValueError(
            f"batch size must be >= 2 and divisible by the {world} processes, got {batch_size}"
        )
    if batch_size // world < 2:
        raise ValueError(
            f"each of the {world} processes needs >= 2 images per batch for BatchNorm; "
            f"batch size {batch_size} is too small"
        )
    if n < batch_size:
        raise ValueError(
            f"the training subset has {n} images, fewer than one batch of {batch_size}; "
            f"lower optim.batch_size"
        )
    if padding < 0 or not alpha >= 0:
        raise ValueError(f"crop padding and mixup alpha must be >= 0, got {padding}, {alpha}")


def eval_batches(
    images: Tensor,
    normalizer: Normalizer,
    batch_size: int,
    *,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Iterator[Tensor]:
    """Normalised, unaugmented batches (B, C, H, W) of uint8 images (N, H, W, C), in order."""
    normalizer = normalizer.to(images.device)
    for start in range(0, len(images), batch_size):
        x = normalizer(images[start : start + batch_size], dtype)
        yield _to_nchw(x, channels_last)
