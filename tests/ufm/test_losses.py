"""Losses of logits: values against torch, analytic gradients against autograd (float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import TOL
from ufm.etf import simplex_etf
from ufm.losses import (
    LOSSES,
    batch_balanced_weights,
    ce_feature_gradient_split,
    cross_entropy,
    get_loss,
    register_loss,
)


def _batch(seed: int, b: int = 7, k: int = 5, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(b, k, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (b,), generator=gen)
    return z, y


@given(st.integers(0, 10_000))
def test_cross_entropy_matches_torch(seed: int) -> None:
    z, y = _batch(seed)
    torch.testing.assert_close(
        cross_entropy(z, y), F.cross_entropy(z, y, reduction="none"), **TOL[torch.float64]
    )


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    value, grad = get_loss("ce").value_and_grad(z, y)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert value[0] == 0.0 and value[1] == pytest.approx(2e4)


@pytest.mark.parametrize("name", sorted(LOSSES))
@given(seed=st.integers(0, 10_000))
def test_every_registered_loss_gradient_matches_autograd(name: str, seed: int) -> None:
    z, y = _batch(seed)
    loss = get_loss(name, e_w=1.0, e_h=5.0)
    z_req = z.clone().requires_grad_(True)
    loss.value(z_req, y).sum().backward()
    torch.testing.assert_close(loss.grad(z, y), z_req.grad, **TOL[torch.float64])
    value, grad = loss.value_and_grad(z, y)
    torch.testing.assert_close(value, loss.value(z, y), **TOL[torch.float64])
    torch.testing.assert_close(grad, z_req.grad, **TOL[torch.float64])


@pytest.mark.parametrize("name", [n for n in LOSSES if get_loss(n).regression])
@given(seed=st.integers(0, 10_000))
def test_regression_losses_need_the_target_logit_only(name: str, seed: int) -> None:
    z, y = _batch(seed)
    loss = get_loss(name, e_w=1.0, e_h=5.0)
    value, grad = loss.target_value_and_grad(z.gather(1, y[:, None]).squeeze(1), y, z.shape[1])
    dense_value, dense_grad = loss.value_and_grad(z, y)
    torch.testing.assert_close(value, dense_value, **TOL[torch.float64])
    torch.testing.assert_close(grad, dense_grad.gather(1, y[:, None]).squeeze(1))
    off_target = dense_grad.scatter(1, y[:, None], 0.0)
    assert torch.count_nonzero(off_target) == 0


def test_cross_entropy_has_no_target_only_form() -> None:
    z, y = _batch(0)
    with pytest.raises(NotImplementedError, match="depends on every logit"):
        get_loss("ce").target_value_and_grad(z[:, 0], y, z.shape[1])


@given(st.integers(0, 10_000))
def test_dr_feature_gradient_is_pull_only(seed: int) -> None:
    # grad_h DR(W* h, k) = -(1 - w*_k^T h / c) w*_k  (DESIGN section 4)
    k, d, e_w, e_h = 6, 9, 2.0, 3.0
    w = math.sqrt(e_w) * simplex_etf(k, d, seed=seed).T  # (K, d)
    _, y = _batch(seed, k=k)
    h = torch.randn(len(y), d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    h.requires_grad_(True)
    c = math.sqrt(e_w * e_h)
    get_loss("dr", e_w=e_w, e_h=e_h).value(h @ w.T, y).sum().backward()
    expected = -(1 - (w[y] * h.detach()).sum(1, keepdim=True) / c) * w[y]
    torch.testing.assert_close(h.grad, expected, **TOL[torch.float64])


@pytest.mark.parametrize("fixed", [True, False])
@given(seed=st.integers(0, 10_000))
def test_ce_pull_push_split_sums_to_autograd(fixed: bool, seed: int) -> None:
    k, d = 5, 7
    gen = torch.Generator().manual_seed(seed)
    w = (
        simplex_etf(k, d, seed=seed).T
        if fixed
        else torch.randn(k, d, generator=gen, dtype=torch.float64)
    )
    _, y = _batch(seed, k=k)
    h = torch.randn(len(y), d, generator=gen, dtype=torch.float64).requires_grad_(True)
    cross_entropy(h @ w.T, y).sum().backward()
    pull, push = ce_feature_gradient_split(w, h.detach(), y)
    torch.testing.assert_close(pull + push, h.grad, **TOL[torch.float64])
    p = torch.softmax(h.detach() @ w.T, 1)
    torch.testing.assert_close(
        pull, -(1 - p[torch.arange(len(y)), y])[:, None] * w[y], **TOL[torch.float64]
    )


def test_etf_push_is_parallel_to_pull_when_non_targets_are_equal() -> None:
    k, d = 6, 8
    w = simplex_etf(k, d, seed=3).T
    y = torch.tensor([2])
    h = 0.7 * w[2:3]  # aligned with w_2: all non-target logits equal
    _, push = ce_feature_gradient_split(w, h, y)
    off = push - (push @ w[2]) / (w[2] @ w[2]) * w[2]
    assert float(off.norm()) < 1e-14
    h_tilted = h + 0.3 * w[4:5]  # unequal non-target probabilities: an off-target push
    _, push = ce_feature_gradient_split(w, h_tilted, y)
    off = push - (push @ w[2]) / (w[2] @ w[2]) * w[2]
    assert float(off.norm()) > 1e-3


def test_batch_balanced_weights() -> None:
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    w = batch_balanced_weights(y, 4, dtype=torch.float64)
    gamma = 6 / 3  # three classes present
    assert w.tolist() == pytest.approx([gamma / 3] * 3 + [gamma / 1] + [gamma / 2] * 2)
    assert float(w.mean()) == pytest.approx(1.0)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        get_loss("mse")
    with pytest.raises(ValueError, match="registered already"):
        register_loss("ce", lambda target=1.0: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="shape"):
        cross_entropy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        get_loss("dr", e_w=0.0, e_h=1.0)
