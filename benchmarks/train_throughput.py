"""Training throughput of deep.train, side by side with its ceiling and a common reference.

    python -m benchmarks train_throughput [-- --arch resnet32 --steps 20 --rounds 3]

(a) our pipeline: the resident uint8 dataset, batched crop/flip/normalise/mixup on the device,
    the objective and the SGD step, exactly as `deep.train.train_steps` runs them;
(b) the ceiling: forward, backward and step of the same network on one resident batch;
(c) the reference most long-tailed CIFAR code uses: a torch DataLoader with worker processes
    applying torchvision-style per-sample transforms to PIL images (crop with padding, flip,
    to tensor, normalise), mixup in the training loop.

Same network, batch, objective and optimizer for all three; the rounds interleave (a, b, c)
so that a change of machine load hits all of them, and the medians are compared. Then the cost
of one NC evaluation (eval-mode features of the whole training subset plus the metrics) is set
against the time of one training epoch.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from deep.augment import TrainBatch
from deep.config import parse_assignment, resolve_config
from deep.distributed import DistInfo, resolve_device
from deep.evaluate import nc_report
from deep.loop import evaluate_epoch, forward_session, train_steps
from deep.session import Session, build_session


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks train_throughput")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--arch", default="resnet32")
    p.add_argument("--head", default="etf")
    p.add_argument("--loss", default="dr")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--mixup", type=float, default=1.0, help="mixup alpha (paper: 1.0)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per pipeline and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes in (c)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any deep.train config key"
    )
    return p


def _session(args: argparse.Namespace) -> Session:
    cfg = resolve_config(
        "paper",
        [
            {
                "data.dataset": args.dataset,
                "data.root": args.data_root,
                "data.imbalance": args.imbalance,
                "model.arch": args.arch,
                "head.name": args.head,
                "loss.name": args.loss,
                "optim.batch_size": args.batch_size,
                "augment.mixup_alpha": args.mixup,
                "run.amp": args.amp,
            },
            dict(parse_assignment(a) for a in args.set),
        ],
    )
    return build_session(cfg, DistInfo(), resolve_device(args.device))


class PerSampleDataset(torch.utils.data.Dataset):
    """The usual per-sample pipeline, as torchvision composes it for CIFAR and long-tail code:
    PIL image, RandomCrop(padding), RandomHorizontalFlip, ToTensor, Normalize; one image a call.
    Written out with Pillow, since this package does not depend on torchvision."""

    def __init__(self, s: Session) -> None:
        self.images = s.train.images.cpu().numpy()  # (N, H, W, C) uint8
        self.labels = s.train.labels.cpu().numpy()
        self.mean = (-s.normalizer.shift / s.normalizer.scale).cpu()[:, None, None] / 255
        self.std = (1 / s.normalizer.scale).cpu()[:, None, None] / 255
        self.padding = s.cfg.augment.crop_padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        w, h = pil.size
        p = self.padding
        pil = ImageOps.expand(pil, border=p, fill=0)  # RandomCrop(size, padding=p)
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        pil = pil.crop((left, top, left + w, top + h))
        if torch.rand(()) < 0.5:  # RandomHorizontalFlip
            pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(pil, np.uint8, copy=True)).view(h, w, -1)  # ToTensor
        x = x.permute(2, 0, 1).contiguous().float().div(255)
        return x.sub_(self.mean).div_(self.std), int(self.labels[i])  # Normalize


def _reference_batches(s: Session, workers: int) -> Iterator[TrainBatch]:
    """Endless batches from a DataLoader, mixed up in the loop as Yang et al.'s code does."""
    loader = torch.utils.data.DataLoader(
        PerSampleDataset(s),
        batch_size=s.cfg.optim.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=s.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    rng = np.random.default_rng(0)
    alpha = s.cfg.augment.mixup_alpha
    while True:
        for x, y in loader:
            x = x.to(s.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(s.device, non_blocking=True)
            lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
            index = torch.randperm(len(y), device=s.device)
            yield TrainBatch(lam * x + (1 - lam) * x[index], y, y[index], lam)


def images_per_second(s: Session, batches: Iterator[TrainBatch], steps: int) -> float:
    """Images per second over `steps` SGD steps of `s.step` on `batches`, from a caught-up
    device to the end of the last step (one host synchronisation at each end)."""
    _sync(s)
    start = time.perf_counter()
    float(train_steps(s, itertools.islice(batches, steps)))  # .item() waits for the device
    return steps * s.cfg.optim.batch_size / (time.perf_counter() - start)


def _sync(s: Session) -> None:
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)


def pipeline_batches(s: Session) -> Iterator[TrainBatch]:
    """The training stream of `s`, epoch after epoch, without end: pipeline (a)."""
    while True:
        yield from s.stream.epoch()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds) < 1 or args.workers < 0:
        parser.error("--steps and --rounds must be >= 1, --workers >= 0")
    try:
        s = _session(args)
    except ValueError as exc:  # ConfigError, DataError: a bad value or missing data
        parser.error(str(exc))
    resident = next(s.stream.epoch())
    pipelines = {
        "(a) pipeline": pipeline_batches(s),
        "(b) raw step": itertools.repeat(resident),
        "(c) DataLoader": _reference_batches(s, args.workers),
    }
    for batches in pipelines.values():  # warm-up: kernels, caches, worker start
        images_per_second(s, batches, 3)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, batches in pipelines.items():
            rates[name].append(images_per_second(s, batches, args.steps))
    _report(s, args, {name: statistics.median(r) for name, r in rates.items()})
    _nc_cost(s, statistics.median(rates["(a) pipeline"]), args.rounds)
    return 0


def _report(s: Session, args: argparse.Namespace, rate: dict[str, float]) -> None:
    threads = torch.get_num_threads()
    print(
        f"{s.cfg.model.arch} on {s.data.name}-LT ({len(s.train.labels)} training images), "
        f"batch {s.cfg.optim.batch_size}, mixup {s.cfg.augment.mixup_alpha:g}, "
        f"{'bf16' if s.amp else 'fp32'}, {s.device} ({threads} threads), torch {torch.__version__}"
    )
    print(f"median of {args.rounds} interleaved rounds of {args.steps} steps:")
    for name, r in rate.items():
        print(f"  {name:<15} {r:9.0f} images/s")
    a, b, c = rate.values()
    print(f"  a/b = {a / b:.3f} (target >= 0.9)   a/c = {a / c:.3f} (target >= 1.2)")


def _nc_cost(s: Session, rate: float, repeats: int) -> None:
    """Median time of the NC evaluation (features of the training subset and the metrics)."""
    epoch = s.stream.steps_per_epoch * s.cfg.optim.batch_size / rate  # [s]
    evaluate_epoch(s, with_nc=True)  # warm-up
    runs = [evaluate_epoch(s, with_nc=True) for _ in range(repeats)]
    nc = statistics.median(r["nc_seconds"] for r in runs)
    test = statistics.median(r["eval_seconds"] for r in runs)
    every = s.cfg.run.nc_every
    print(
        f"NC metrics on all {len(s.train.labels)} training images: {nc:.2f} s = "
        f"{100 * nc / epoch:.1f}% of a {epoch:.1f} s training epoch (target < 10%), "
        f"{100 * nc / epoch / every:.1f}% per epoch at run.nc_every={every}; "
        f"test-set accuracy {test:.2f} s"
    )
    features, _ = forward_session(s, s.eval_net, s.train.images)
    metrics = []
    for _ in range(repeats + 1):  # the first one warms up
        start = time.perf_counter()
        nc_report(features, s.train.labels, s.eval_net.module.head, s.minority)
        metrics.append(time.perf_counter() - start)
    m = statistics.median(metrics[1:])
    print(
        f"  of which the metrics on the features: {1e3 * m:.1f} ms = {100 * m / epoch:.2f}% of "
        "the epoch; the rest is the eval-mode forward pass over the training images"
    )
