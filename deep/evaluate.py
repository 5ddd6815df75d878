"""Evaluation: features and logits in eval mode, accuracies, and the NC metrics of `ufm`.

Accuracy is top-1 over the test set, overall (sample-averaged) and per class; the head /
medium / tail figures are class-averaged over each group, as in the long-tail literature.
The NC metrics are those of `ufm.metrics.nc_metrics`, computed on the features of the whole
training subset in eval mode without augmentation, with the head's classifier W (and b).

The evaluated network is an eval-mode copy with BatchNorm folded into the convolutions
(exact, and a memory pass per layer cheaper), kept across epochs and refreshed in place, so
that with run.compile its compiled form is built once. Under bf16 autocast the copy's backbone
holds its weights in bf16 and takes bf16 input: the same arithmetic as autocast (which would
cast every weight at every call), without the casts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from deep.augment import Normalizer, eval_batches
from deep.backbone_head import Network
from deep.heads import Head
from deep.resnet import fold_batchnorm
from ufm.metrics import last_layer_geometry, nc_metrics

__all__ = [
    "EvalNetwork",
    "accuracy_from_counts",
    "class_correct",
    "forward_all",
    "geometry_snapshot",
    "nc_report",
]


class EvalNetwork:
    """The eval-mode, BatchNorm-folded copy of a network that evaluation runs.

    `run` is the copy itself or, with `compile`, its torch.compile form; `refresh` writes the
    current weights into the same tensors, so the compiled form stays valid. With
    `backbone_dtype` (bf16 when evaluation runs under bf16 autocast) the backbone's weights are
    kept in that dtype, and `input_dtype` is what `forward_all` feeds it.
    """

    def __init__(
        self, net: Network, compile: bool = False, backbone_dtype: torch.dtype | None = None
    ) -> None:
        self.module: Network = fold_batchnorm(net)
        self.input_dtype = backbone_dtype or torch.float32
        if backbone_dtype is not None:
            self.module.backbone.to(backbone_dtype)
        self.run: Callable[[Tensor], tuple[Tensor, Tensor]] = (
            torch.compile(self.module) if compile else self.module
        )

    def refresh(self, net: Network) -> None:
        self.module.load_state_dict(fold_batchnorm(net).state_dict())


@torch.inference_mode()
def forward_all(
    net: Callable[[Tensor], tuple[Tensor, Tensor]],
    images: Tensor,
    normalizer: Normalizer,
    *,
    batch_size: int,
    amp: bool = False,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Features h (N, d) and logits z (N, K), float32, of uint8 images (N, H, W, C).

    `dtype` is that of the normalised input batches (an `EvalNetwork`'s `input_dtype`).
    """
    hs, zs = [], []
    device_type = images.device.type
    for x in eval_batches(images, normalizer, batch_size, channels_last=channels_last):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            h, z = net(x.to(dtype))  # normalised in float32, rounded once, as autocast does
        hs.append(h.float())
        zs.append(z.float())
    d, k = (hs[0].shape[1], zs[0].shape[1]) if hs else (0, 0)
    empty = images.new_zeros((0, d), dtype=torch.float32)
    return (torch.cat(hs) if hs else empty), (torch.cat(zs) if zs else empty[:, :k])


def class_correct(logits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per class: [correct, total] as a (2, K) int64 tensor (summable across processes)."""
    if len(labels) == 0:  # an empty shard: more processes than test images
        return torch.zeros((2, num_classes), dtype=torch.long, device=labels.device)
    hit = logits.argmax(1) == labels
    correct = torch.bincount(labels[hit], minlength=num_classes)
    total = torch.bincount(labels, minlength=num_classes)
    return torch.stack([correct, total])


def accuracy_from_counts(counts: Tensor, groups: dict[str, Sequence[int]]) -> dict:
    """Overall accuracy, per-class accuracies and class-averaged group accuracies (fractions)."""
    correct, total = counts.double().cpu()
    per_class = correct / total.clamp_min(1)
    out = {"test_acc": float(correct.sum() / total.sum()), "per_class_acc": per_class.tolist()}
    for name, idx in groups.items():
        # An empty group (no few-shot class, say) has no accuracy: None, an empty CSV cell.
        out[f"{name}_acc"] = float(per_class[list(idx)].mean()) if len(idx) else None
    return out


def nc_report(
    features: Tensor, labels: Tensor, head: Head, minority: Sequence[int]
) -> dict[str, float]:
    """`ufm.metrics.nc_metrics` of training features (N, d) with the head's classifier."""
    w, b = head.classifier()
    return nc_metrics(
        features,
        labels,
        w.detach().float(),
        None if b is None else b.detach().float(),
        num_classes=head.num_classes,
        minority=list(minority),
    )


def geometry_snapshot(
    features: Tensor, labels: Tensor, head: Head, *, epoch: int, train: dict[str, float]
) -> dict[str, Any]:
    """One evaluation's last-layer geometry (`ufm.metrics.last_layer_geometry`) as CPU float64
    tensors, with the epoch and the training accuracy and loss it was measured at."""
    w, b = head.classifier()
    geometry = last_layer_geometry(
        features, labels, w.float(), None if b is None else b.float(), num_classes=head.num_classes
    )
    snapshot: dict[str, Any] = {key: value.cpu() for key, value in geometry.items()}
    snapshot["epoch"] = epoch
    snapshot |= {key: float(value) for key, value in train.items()}
    return snapshot
