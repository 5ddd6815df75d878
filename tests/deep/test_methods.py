"""The long-tail methods as training objectives: each equals its ufm formula, gradients reach
exactly the parameters they should, deferred re-weighting switches on time and survives a
resume, and every method of the table builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import deep.loop
from deep.backbone_head import build_network
from deep.config import HeadConfig, resolve_config
from deep.heads import HEADS, CosineHead, LinearHead
from deep.methods import METHODS, ORDER
from deep.objectives import OBJECTIVES, ObjectiveContext, build_objective
from deep.session import _optimizer
from deep.train import main
from tests.conftest import TOL
from ufm import longtail_losses as lt
from ufm.losses import cross_entropy

F64 = torch.float64
COUNTS = (40, 20, 10, 5)
N = torch.tensor(COUNTS, dtype=F64)


def _ctx(**kw) -> ObjectiveContext:
    base = {"num_classes": 4, "feature_dim": 6, "class_counts": COUNTS, "epochs": 10}
    return ObjectiveContext(**(base | kw))


def _batch(seed: int = 0, b: int = 10):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(b, 6, generator=gen, dtype=F64)
    z = torch.randn(b, 4, generator=gen, dtype=F64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1, 2, 3][:b])
    return h, z, y


def _close(a, b) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), **TOL[F64])


def test_rebalanced_objectives_are_their_formulas() -> None:
    h, z, y = _batch()
    tanh = torch.tanh(z)
    cases = {
        "logit-adjusted": (
            {"tau": 0.5},
            z,
            lt.logit_adjusted_cross_entropy(z, y, N, 0.5).mean(),
        ),
        "balanced-softmax": ({}, z, lt.balanced_softmax_cross_entropy(z, y, N).mean()),
        "ldam": (
            {"max_margin": 0.4, "scale": 10.0},
            tanh,
            lt.ldam_loss(tanh, y, lt.ldam_margins(N, 0.4), 10.0).mean(),
        ),
    }
    for name, (options, logits, expected) in cases.items():
        got = build_objective(name, _ctx(options=options))(h, logits, y, y, 1.0)
        _close(got, expected)


@pytest.mark.parametrize("name", ["ldam-drw", "ce-drw"])
def test_deferred_reweighting_switches_at_its_epoch(name: str) -> None:
    h, z, y = _batch(1)
    z = torch.tanh(z)
    obj = build_objective(name, _ctx(options={"beta": 0.99, "drw_epoch": 3}))
    per_sample = (
        lt.ldam_loss(z, y, lt.ldam_margins(N), 30.0) if name == "ldam-drw" else cross_entropy(z, y)
    )
    for epoch, weights in [(0, torch.ones(4, dtype=F64)), (2, None), (3, "drw"), (9, "drw")]:
        obj.start_epoch(epoch)
        w = lt.drw_class_weights(N, 0.99) if weights == "drw" else torch.ones(4, dtype=F64)
        _close(obj(h, z, y, y, 1.0), lt.class_weighted_mean(per_sample, y, w))


def test_deferred_reweighting_starts_at_the_first_milestone_by_default() -> None:
    def start(**kw) -> int:
        return build_objective("ldam-drw", _ctx(**kw)).start

    assert start(milestones=(160, 180), epochs=200) == 160  # Cao et al.: epoch 160 of 200
    assert start(epochs=20) == 16  # no milestones: 80% of the run
    assert start(milestones=(15,), options={"drw_epoch": 4}) == 4
    with pytest.raises(ValueError, match="drw_epoch must be a whole number"):
        start(options={"drw_epoch": 2.5})


def test_nc_regularized_objective_is_ce_plus_the_two_terms() -> None:
    h, z, y = _batch(2)
    obj = build_objective("ce-nc-reg", _ctx(options={"lambda1": 0.2, "lambda2": 0.3}, seed=4))
    centres = obj.centres.detach().to(F64)
    expected = (
        cross_entropy(z, y).mean()
        + 0.2 * lt.nc1_regularizer(h, y, centres)
        + 0.3 * lt.nc2_regularizer(centres)
    )
    _close(obj(h, z, y, y, 1.0), expected)
    again = build_objective("ce-nc-reg", _ctx(seed=4))
    assert torch.equal(again.centres, obj.centres)  # drawn from the objective's seed alone
    assert not torch.equal(build_objective("ce-nc-reg", _ctx(seed=5)).centres, obj.centres)


def test_nc_regularizer_centres_have_their_own_step() -> None:
    obj = build_objective("ce-nc-reg", _ctx())
    (group,) = obj.param_groups()
    assert group["params"] == [obj.centres]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.5, 0.0, 0.0)
    assert group["scheduled"] is False


def test_centres_get_gradients_from_their_own_terms_only() -> None:
    h, z, y = _batch(3)
    h.requires_grad_(True)
    z.requires_grad_(True)
    obj = build_objective("ce-nc-reg", _ctx()).double()
    cross_entropy(z, y).mean().backward()
    assert obj.centres.grad is None and h.grad is None  # CE: logits only
    lt.nc2_regularizer(obj.centres).backward()
    assert obj.centres.grad is not None and obj.centres.grad.abs().sum() > 0 and h.grad is None
    obj.centres.grad = None
    lt.nc1_regularizer(h, y, obj.centres).backward()
    assert obj.centres.grad.abs().sum() > 0 and h.grad.abs().sum() > 0


def _allnc(head, **options):
    return build_objective("allnc", _ctx(head=head, options=options))


def test_allnc_is_its_three_parts() -> None:
    h, z, y = _batch(4)
    head = LinearHead(6, 4).double()
    obj = _allnc(head, hycon_tau=0.2, p2p_tau=0.3, hycon_weight=0.7, p2p_weight=0.4)
    obj.start_epoch(4)
    alpha = lt.bilateral_branch_weight(4, 10)
    means, counts = lt.batch_class_means(h, y, 4)
    present = counts > 0
    centred = means - means[present].mean(0)
    expected = (
        alpha * cross_entropy(z, y).mean()
        + (1 - alpha) * lt.logit_adjusted_cross_entropy(head.fc(h), y, N, 1.0).mean()
        + 0.7 * hycon_loss(h, y)
        + 0.4 * lt.peer_to_peer_loss(centred, present, head.fc.weight, 0.3)
    )
    _close(obj(h, z, y, y, 1.0), expected)


def hycon_loss(h, y):
    return lt.hybrid_contrastive_loss(h, y, 4, tau=0.2, balanced=True)


def _grads(loss: torch.Tensor, tensors: dict[str, torch.Tensor]) -> dict[str, bool]:
    for t in tensors.values():
        t.grad = None
    loss.backward()
    return {
        name: t.grad is not None and bool(t.grad.abs().sum() > 0) for name, t in tensors.items()
    }


def test_allnc_gradients_reach_what_each_part_trains() -> None:
    h0, _, y = _batch(5)
    head = LinearHead(6, 4).double()
    h = h0.clone().requires_grad_(True)
    params = {"h": h, "W": head.fc.weight, "b": head.fc.bias}

    def part(epoch: int, detach_logits: bool, **weights) -> torch.Tensor:
        obj = _allnc(head, **{"hycon_weight": 0.0, "p2p_weight": 0.0} | weights)
        obj.start_epoch(epoch)  # epoch 0: alpha = 1, the conventional branch alone
        z = head.fc(h)
        return obj(h, z.detach() if detach_logits else z, y, y, 1.0)

    assert _grads(part(0, False), params) == {"h": True, "W": True, "b": True}
    # the re-balancing branch trains the classifier on detached features
    assert _grads(part(9, True), params) == {"h": False, "W": True, "b": True}
    assert _grads(part(0, True, hycon_weight=1.0), params) == {"h": True, "W": False, "b": False}
    assert _grads(part(0, True, p2p_weight=1.0), params) == {"h": True, "W": True, "b": False}


def _etf_network():
    return build_network(
        "resnet8", "etf", in_channels=1, num_classes=4, width=1, head_cfg=HeadConfig(), seed=0
    )


@pytest.mark.parametrize("loss", ["allnc", "ce-nc-reg", "ldam-drw", "logit-adjusted"])
def test_the_fixed_etf_never_moves_and_is_never_optimized(loss: str) -> None:
    net = _etf_network()
    ctx = _ctx(feature_dim=net.head.feature_dim, head=net.head, options={})
    obj = build_objective(loss, ctx)
    cfg = resolve_config("quick", [{"head.name": "etf", "loss.name": loss}])
    opt = _optimizer(cfg, net, obj)
    optimized = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.head.weight) not in optimized and not net.head.weight.requires_grad
    before = net.head.weight.clone()
    x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 0])
    for epoch in range(3):
        obj.start_epoch(epoch)
        h, z = net(x)
        opt.zero_grad()
        obj(h, z, y, y, 1.0).backward()
        opt.step()
    assert torch.equal(net.head.weight, before)


def test_cosine_head_gives_cosines_and_unit_classifier_rows() -> None:
    head = HEADS.get("cosine")(5, 3, HeadConfig(name="cosine"))
    assert isinstance(head, CosineHead)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    _, z = head(x)
    w, b = head.classifier()
    expected = torch.nn.functional.cosine_similarity(x[:, None], head.fc.weight[None], dim=2)
    torch.testing.assert_close(z, expected, **TOL[torch.float32])
    torch.testing.assert_close(w.norm(dim=1), torch.ones(3), **TOL[torch.float32])
    assert b is None and torch.allclose(head.logits(x), z)


def test_unknown_options_are_rejected_with_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"'ldam-drw' has no option 'lam'.*beta \(default 0.9999\)"
    ):
        build_objective("ldam-drw", _ctx(options={"lam": 1.0}))
    with pytest.raises(ValueError, match="reads the head's classifier"):
        build_objective("allnc", _ctx())


@pytest.mark.parametrize("name", ORDER)
def test_every_method_names_a_registered_head_and_objective(name: str) -> None:
    method = METHODS.get(name)
    assert method.head in HEADS and method.loss in OBJECTIVES
    net = build_network(
        "resnet8", method.head, in_channels=1, num_classes=4, width=1, head_cfg=HeadConfig(), seed=0
    )
    ctx = _ctx(feature_dim=net.head.feature_dim, head=net.head, options=dict(method.options))
    loss = build_objective(method.loss, ctx)(
        *net(torch.randn(4, 1, 8, 8)), *[torch.arange(4)] * 2, 1.0
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert sorted(METHODS.names()) == sorted(ORDER)


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "fashion-mnist", "--data-root", str(root), "--out", str(out),
        "--arch", "resnet8", "--epochs", "3", "--batch-size", "16", "--nc-every", "3",
        "--imbalance", "4", "--set", "data.verify=false", "--set", "data.download=false",
        "--no-progress", "--no-figures", *extra,
    ]  # fmt: skip


def _final(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_deferred_reweighting_survives_an_interrupted_run(idx_root, tmp_path, monkeypatch) -> None:
    extra = ["--head", "cosine", "--loss", "ldam-drw", "--set", "loss.options={drw_epoch: 2}"]
    reference = tmp_path / "reference"
    assert main(_args(idx_root, reference, *extra)) == 0

    original = deep.loop.run_epoch

    def stop_before_the_reweighted_epoch(s):
        if s.epoch == 2:
            raise KeyboardInterrupt
        return original(s)

    interrupted = tmp_path / "interrupted"
    monkeypatch.setattr(deep.loop, "run_epoch", stop_before_the_reweighted_epoch)
    assert main(_args(idx_root, interrupted, *extra)) == 130
    monkeypatch.setattr(deep.loop, "run_epoch", original)
    assert _final(interrupted)["epoch"] == 2
    assert main(["--resume", str(interrupted), "--no-progress", "--no-figures"]) == 0

    a, b = (
        torch.load(p / "checkpoints" / "last.pt", weights_only=True)
        for p in (reference, interrupted)
    )
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    losses = [[row["train_loss"] for row in ckpt["history"]] for ckpt in (a, b)]
    assert losses[0] == losses[1]
    never = tmp_path / "never"  # the same run without re-weighting departs at epoch 3 only
    assert main(_args(idx_root, never, *extra[:-1], "loss.options={drw_epoch: 99}")) == 0
    plain = [row["train_loss"] for row in _final(never)["history"]]
    assert plain[:2] == losses[0][:2] and plain[2] != losses[0][2]
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 3
