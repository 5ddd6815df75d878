"""The long-tail losses of ufm.longtail_losses against hand computations (plain Python, float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TOL
from ufm.etf import simplex_etf
from ufm.longtail_losses import (
    balanced_softmax_cross_entropy,
    batch_class_means,
    bilateral_branch_weight,
    class_weighted_mean,
    drw_class_weights,
    hybrid_contrastive_loss,
    ldam_loss,
    ldam_margins,
    logit_adjusted_cross_entropy,
    nc1_regularizer,
    nc2_regularizer,
    peer_to_peer_loss,
)
from ufm.losses import cross_entropy

F64 = torch.float64
COUNTS = torch.tensor([50.0, 20.0, 5.0, 2.0], dtype=F64)


def _batch(seed: int = 0, b: int = 7, k: int = 4, d: int = 3):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, generator=gen, dtype=F64)
    h = torch.randn(b, d, generator=gen, dtype=F64)
    y = torch.tensor([0, 0, 1, 2, 0, 2, 1][:b])
    return z, h, y


def _ce(logits: list[float], k: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[k]


def _close(a, b) -> None:
    torch.testing.assert_close(
        torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64), **TOL[F64]
    )


def test_logit_adjusted_ce_by_hand() -> None:
    z, _, y = _batch()
    tau = 0.7
    prior = (COUNTS / COUNTS.sum()).tolist()
    expected = [
        _ce([z[i, j].item() + tau * math.log(prior[j]) for j in range(4)], int(y[i]))
        for i in range(len(y))
    ]
    _close(logit_adjusted_cross_entropy(z, y, COUNTS, tau), expected)
    _close(logit_adjusted_cross_entropy(z, y, COUNTS, 0.0), cross_entropy(z, y))


def test_logit_adjusted_gradient_is_the_adjusted_softmax() -> None:
    z, _, y = _batch(1)
    z.requires_grad_(True)
    logit_adjusted_cross_entropy(z, y, COUNTS, 1.0).sum().backward()
    expected = torch.softmax(z.detach() + torch.log(COUNTS / COUNTS.sum()), 1) - F.one_hot(y, 4)
    _close(z.grad, expected)


def test_balanced_softmax_by_hand() -> None:
    z, _, y = _batch(2)
    n = COUNTS.tolist()
    expected = [
        -math.log(
            n[int(y[i])]
            * math.exp(z[i, int(y[i])].item())
            / sum(n[j] * math.exp(z[i, j].item()) for j in range(4))
        )
        for i in range(len(y))
    ]
    _close(balanced_softmax_cross_entropy(z, y, COUNTS), expected)


def test_ldam_margins_are_c_over_fourth_root_of_counts() -> None:
    margins = ldam_margins(COUNTS, max_margin=0.5)
    c = 0.5 * 2.0**0.25  # the smallest class (n = 2) gets the largest margin, 0.5
    _close(margins, [c / n**0.25 for n in COUNTS.tolist()])
    assert margins.argmax() == 3 and math.isclose(float(margins.max()), 0.5)


def test_ldam_loss_by_hand() -> None:
    z, _, y = _batch(3)
    z = torch.tanh(z)  # cosines
    margins, s = ldam_margins(COUNTS), 30.0
    expected = []
    for i in range(len(y)):
        k = int(y[i])
        row = [s * (z[i, j].item() - (margins[k].item() if j == k else 0.0)) for j in range(4)]
        expected.append(_ce(row, k))
    _close(ldam_loss(z, y, margins, s), expected)


def test_drw_weights_by_hand_and_limits() -> None:
    beta = 0.999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS.tolist()]
    _close(drw_class_weights(COUNTS, beta), [4 * w / sum(raw) for w in raw])
    _close(drw_class_weights(COUNTS, 0.0), torch.ones(4, dtype=F64))  # beta = 0: no re-weighting
    weights = drw_class_weights(COUNTS)
    assert bool((weights[1:] > weights[:-1]).all())  # rarer classes weigh more
    with pytest.raises(ValueError, match="beta"):
        drw_class_weights(COUNTS, 1.0)


def test_class_weighted_mean_is_torch_weighted_cross_entropy() -> None:
    z, _, y = _batch(4)
    weights = drw_class_weights(COUNTS, 0.99)
    expected = F.cross_entropy(z, y, weight=weights)
    _close(class_weighted_mean(cross_entropy(z, y), y, weights), expected)


def test_batch_class_means_by_hand() -> None:
    _, h, y = _batch(5)
    means, counts = batch_class_means(h, y, 4)
    for k in range(4):
        members = [h[i] for i in range(len(y)) if int(y[i]) == k]
        assert counts[k] == len(members)
        _close(means[k], torch.stack(members).mean(0) if members else torch.zeros(3, dtype=F64))


def test_nc1_regularizer_by_hand() -> None:
    _, h, y = _batch(6)
    centres = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    total = 0.0
    for k in range(4):  # class 3 is absent from the batch and adds nothing
        members = [i for i in range(len(y)) if int(y[i]) == k]
        dist = [
            sum((h[i, c].item() - centres[k, c].item()) ** 2 for c in range(3)) for i in members
        ]
        total += sum(dist) / len(members) if members else 0.0
    _close(nc1_regularizer(h, y, centres), total / 4)


def test_nc2_regularizer_by_hand() -> None:
    centres = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    mean = centres.mean(0)
    unit = [(c - mean) / (c - mean).norm() for c in centres]
    angles = [
        math.acos(max(float(unit[k] @ unit[j]) for j in range(4) if j != k)) for k in range(4)
    ]
    _close(nc2_regularizer(centres), -sum(angles) / 4)


def test_nc2_is_smallest_at_the_simplex_etf_and_finite_at_coincident_centres() -> None:
    etf = simplex_etf(5, 6, seed=0).T  # (K, d)
    _close(nc2_regularizer(3.0 * etf + 1.0), -math.acos(-1 / 4))  # scale and shift invariant
    centres = etf.clone().requires_grad_(True)
    with torch.no_grad():
        centres[1] = centres[0]  # cosine 1: clipped, arccos' slope stays finite
    nc2_regularizer(centres).backward()
    assert torch.isfinite(centres.grad).all()


def _hycon_by_hand(h: torch.Tensor, y: torch.Tensor, k: int, tau: float, balanced: bool) -> float:
    classes = sorted(set(y.tolist()))
    means = {c: h[y == c].mean(0) for c in classes}
    centre = sum(means.values()) / len(classes)
    unit = [(v - centre) / (v - centre).norm() for v in h]
    views = [(u, int(c)) for u, c in zip(unit, y.tolist(), strict=True)]
    views += [((means[c] - centre) / (means[c] - centre).norm(), c) for c in classes]
    total = 0.0
    for i, (u, label) in enumerate(unit_labels := list(zip(unit, y.tolist(), strict=True))):
        candidates = [(a, c) for j, (a, c) in enumerate(views) if j != i]
        sims = [float(u @ a) / tau for a, _ in candidates]
        count = {c: sum(1 for _, cc in candidates if cc == c) for c in range(k)}
        den = sum(
            math.exp(s) / (count[c] if balanced else 1)
            for s, (_, c) in zip(sims, candidates, strict=True)
        )
        positives = [s for s, (_, c) in zip(sims, candidates, strict=True) if c == label]
        total += -sum(s - math.log(den) for s in positives) / len(positives)
    return total / len(unit_labels)


@pytest.mark.parametrize("balanced", [True, False])
def test_hybrid_contrastive_loss_by_hand(balanced: bool) -> None:
    _, h, y = _batch(7, d=5)
    expected = _hycon_by_hand(h, y, 4, 0.3, balanced)
    _close(hybrid_contrastive_loss(h, y, 4, tau=0.3, balanced=balanced), expected)


def test_hybrid_contrastive_loss_prefers_collapsed_features() -> None:
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    etf = simplex_etf(3, 4, seed=0).T
    noise = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    collapsed = hybrid_contrastive_loss(etf[y], y, 3)
    assert collapsed < hybrid_contrastive_loss(etf[y] + 0.5 * noise, y, 3)


def test_peer_to_peer_loss_by_hand() -> None:
    gen = torch.Generator().manual_seed(8)
    means = torch.randn(4, 3, generator=gen, dtype=F64)
    w = torch.randn(4, 3, generator=gen, dtype=F64)
    present = torch.tensor([True, False, True, True])
    idx = [0, 2, 3]
    tau = 0.5

    def cos(a, b) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    to_w = [_ce([cos(means[k], w[j]) / tau for j in range(4)], k) for k in idx]
    to_m = [_ce([cos(w[k], means[j]) / tau for j in idx], p) for p, k in enumerate(idx)]
    expected = 0.5 * (sum(to_w) / 3 + sum(to_m) / 3)
    _close(peer_to_peer_loss(means, present, w, tau), expected)


def test_peer_to_peer_loss_is_smaller_for_self_dual_pairs() -> None:
    etf = simplex_etf(4, 4, seed=1).T
    everyone = torch.ones(4, dtype=torch.bool)
    swapped = etf[[1, 0, 2, 3]]
    assert peer_to_peer_loss(etf, everyone, 2.0 * etf) < peer_to_peer_loss(swapped, everyone, etf)


def test_bilateral_branch_weight() -> None:
    assert bilateral_branch_weight(0, 10) == 1.0
    assert math.isclose(bilateral_branch_weight(9, 10), 1 - 0.81)
    assert math.isclose(bilateral_branch_weight(5, 10, power=1.0), 0.5)
    with pytest.raises(ValueError, match="epoch"):
        bilateral_branch_weight(10, 10)


def test_count_checks() -> None:
    z, _, y = _batch()
    with pytest.raises(ValueError, match="class counts must have shape"):
        logit_adjusted_cross_entropy(z, y, COUNTS[:3])
    with pytest.raises(ValueError, match="positive"):
        ldam_margins(torch.tensor([3.0, 0.0]))
