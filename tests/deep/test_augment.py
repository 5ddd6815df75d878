"""Batched augmentation against per-sample references; the batch stream's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from deep.augment import Normalizer, TrainStream, beta_quantile, crop_flip, eval_batches
from tests.conftest import TOL


def _images(n: int = 6, h: int = 7, w: int = 5, c: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, c), generator=gen, dtype=torch.uint8)


def _reference_crop_flip(images, padding, flip, seed):
    """One sample at a time, replaying the generator draws of crop_flip."""
    gen = torch.Generator().manual_seed(seed)
    b, h, w, _ = images.shape
    dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen)[:, 0]
    dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen)[:, 0]
    mirrored = (torch.rand(b, 1, generator=gen) < 0.5)[:, 0] if flip else torch.zeros(b, dtype=bool)
    out = []
    for i in range(b):
        img = images[i].permute(2, 0, 1)  # (C, H, W)
        padded = F.pad(img, (padding, padding, padding, padding))
        crop = padded[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append((crop.flip(2) if mirrored[i] else crop).permute(1, 2, 0))
    return torch.stack(out)


@pytest.mark.parametrize(("padding", "flip"), [(0, True), (2, False), (3, True), (4, True)])
def test_crop_flip_matches_per_sample_reference(padding: int, flip: bool) -> None:
    images = _images()
    got = crop_flip(images, padding, flip, torch.Generator().manual_seed(7))
    assert torch.equal(got, _reference_crop_flip(images, padding, flip, 7))


def test_no_padding_no_flip_is_identity() -> None:
    images = _images()
    assert crop_flip(images, 0, False, torch.Generator()) is images


def test_crop_flip_leaves_global_random_state_alone() -> None:
    before = torch.get_rng_state()
    crop_flip(_images(), 2, True, torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.get_rng_state())


def test_normalizer_gives_zero_mean_unit_std() -> None:
    images = _images(n=50, seed=3)
    norm = Normalizer.from_images(images)
    x = norm(images, torch.float64).reshape(-1, 3)
    torch.testing.assert_close(x.mean(0), torch.zeros(3, dtype=torch.float64), **TOL[torch.float32])
    torch.testing.assert_close(
        x.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), **TOL[torch.float32]
    )


def test_constant_channel_is_left_finite() -> None:
    norm = Normalizer.from_images(torch.full((4, 3, 3, 1), 9, dtype=torch.uint8))
    assert torch.isfinite(norm.scale).all() and norm.scale.item() == 1.0


def test_beta_quantile_is_the_beta_distribution() -> None:
    u = np.linspace(0.01, 0.99, 37)
    for alpha in (0.2, 1.0, 4.0):
        np.testing.assert_allclose(
            beta_quantile(alpha, u), scipy.stats.beta.ppf(u, alpha, alpha), rtol=1e-10
        )


def _stream(n=40, batch=8, world=1, rank=0, alpha=0.0, seed=0, padding=1, flip=True):
    images = _images(n=n, h=6, w=6, seed=5)
    labels = torch.arange(n) % 4
    return TrainStream(
        images,
        labels,
        batch_size=batch,
        normalizer=Normalizer.from_images(images),
        crop_padding=padding,
        flip=flip,
        mixup_alpha=alpha,
        seed=seed,
        rank=rank,
        world=world,
    )


def test_epoch_visits_distinct_images_in_channels_last_batches() -> None:
    stream = _stream(n=42, batch=8)
    batches = list(stream.epoch())
    assert len(batches) == stream.steps_per_epoch == 5  # the last 2 images wait for next epoch
    x = batches[0].x
    assert x.shape == (8, 3, 6, 6) and x.is_contiguous(memory_format=torch.channels_last)
    assert all(b.lam == 1.0 and torch.equal(b.y_a, b.y_b) for b in batches)


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    a, b, c = (list(_stream(seed=s).epoch()) for s in (0, 0, 1))
    assert all(torch.equal(p.x, q.x) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p.x, q.x) for p, q in zip(a, c, strict=True))


def test_state_dict_replays_the_next_epoch() -> None:
    stream = _stream(alpha=1.0)
    list(stream.epoch())
    state = {k: v.clone() for k, v in stream.state_dict().items()}
    first = list(stream.epoch())
    other = _stream(alpha=1.0)
    other.load_state_dict(state)
    again = list(other.epoch())
    for p, q in zip(first, again, strict=True):
        assert torch.equal(p.x, q.x) and torch.equal(p.y_b, q.y_b) and p.lam == q.lam


def test_processes_split_each_global_batch() -> None:
    whole = list(_stream(batch=8).epoch())
    parts = [list(_stream(batch=8, world=2, rank=r).epoch()) for r in (0, 1)]
    for step, batch in enumerate(whole):
        joined = torch.cat([parts[0][step].y_a, parts[1][step].y_a])
        assert torch.equal(joined, batch.y_a)  # same global order on every process


def test_mixup_is_a_convex_pair_of_batch_images() -> None:
    # Without crops and flips both streams see the same batches; mixup adds a partner.
    mixed = _stream(alpha=1.0, padding=0, flip=False)
    plain = _stream(alpha=0.0, padding=0, flip=False)
    for m, p in zip(mixed.epoch(), plain.epoch(), strict=True):
        assert 0.0 < m.lam < 1.0 and torch.equal(m.y_a, p.y_a)
        partner = (m.x - m.lam * p.x) / (1.0 - m.lam)  # (B, C, H, W)
        dist = (partner[:, None] - p.x[None]).flatten(2).abs().amax(2)  # (B, B)
        j = dist.argmin(1)
        assert dist.min(1).values.max() < 1e-3 and sorted(j.tolist()) == list(range(len(j)))
        assert torch.equal(m.y_b, p.y_a[j])


def test_eval_batches_cover_the_set_in_order() -> None:
    images = _images(n=10, h=4, w=4)
    norm = Normalizer.from_images(images)
    batches = list(eval_batches(images, norm, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    torch.testing.assert_close(torch.cat(batches), norm(images).permute(0, 3, 1, 2))


@pytest.mark.parametrize(("batch", "world", "n"), [(1, 1, 10), (6, 4, 10), (8, 1, 7), (4, 4, 40)])
def test_impossible_batch_sizes_are_rejected(batch: int, world: int, n: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        _stream(n=n, batch=batch, world=world)


@pytest.mark.gpu
def test_stream_on_cuda_matches_the_cpu_layout(cuda) -> None:
    images = _images(n=40, h=6, w=6, seed=5)
    labels = torch.arange(40) % 4
    norm = Normalizer.from_images(images)
    stream = TrainStream(
        images.to(cuda),
        labels.to(cuda),
        batch_size=8,
        normalizer=norm,
        crop_padding=1,
        flip=True,
        mixup_alpha=1.0,
        seed=0,
    )
    state = {k: v.clone() for k, v in stream.state_dict().items()}
    first = [b.x.cpu() for b in stream.epoch()]
    batch = next(stream.epoch())
    assert batch.x.device.type == "cuda" and batch.x.is_contiguous(
        memory_format=torch.channels_last
    )
    stream.load_state_dict(state)
    again = [b.x.cpu() for b in stream.epoch()]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
