"""CIFAR ResNets and heads: shapes, parameter counts, seeded initialisation, BN folding."""

from __future__ import annotations

import math

import pytest
import torch

from deep.augment import Normalizer
from deep.backbone_head import build_network
from deep.config import HeadConfig
from deep.distributed import init_distributed
from deep.evaluate import EvalNetwork, class_correct, forward_all
from deep.heads import HEADS
from deep.resnet import BACKBONES, CifarResNet, fold_batchnorm, init_weights
from deep.session import use_amp
from tests.conftest import TOL
from ufm.etf import simplex_etf


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_maps_images_to_64w_features(name: str) -> None:
    net = BACKBONES.get(name)(in_channels=3, width=1).eval()
    with torch.no_grad():
        h = net(torch.randn(2, 3, 9, 9))  # odd sizes: 9 -> 5 -> 3 in the three stages
    assert h.shape == (2, 64) and net.feature_dim == 64


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_width_multiplies_the_feature_dimension(channels: int, size: int) -> None:
    net = CifarResNet(8, channels, width=2).eval()
    with torch.no_grad():
        assert net(torch.randn(2, channels, size, size)).shape == (2, 128)


def test_resnet32_has_the_papers_parameter_count() -> None:
    # He et al. 2016, table 6: ResNet-32 on CIFAR-10 has 0.46M parameters.
    net = build_network(
        "resnet32",
        "linear",
        in_channels=3,
        num_classes=10,
        width=1,
        head_cfg=HeadConfig(name="linear"),
        seed=0,
    )
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.46e6, rel=0.01)


@pytest.mark.parametrize("depth", [7, 9, 0])
def test_depth_must_be_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def _trained_like(seed: int) -> CifarResNet:
    """A ResNet-8 in float64 with non-trivial BatchNorm statistics and affine parameters."""
    net = CifarResNet(8, 3, 1).double()
    init_weights(net, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype))
                m.running_var.copy_(
                    torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5
                )
    return net


def test_folded_network_equals_the_eval_network() -> None:
    net = _trained_like(3)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        expected = net.eval()(x)
        folded = fold_batchnorm(net)
        got = folded(x)
    torch.testing.assert_close(got, expected, **TOL[torch.float64])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # original untouched


def test_channels_last_gives_the_same_features() -> None:
    net = _trained_like(4).eval()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        a = net(x)
        b = net.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        )
    torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_initialisation_is_a_function_of_the_seed_only() -> None:
    def weights(seed: int) -> torch.Tensor:
        net = build_network(
            "resnet8",
            "linear",
            in_channels=3,
            num_classes=4,
            width=1,
            head_cfg=HeadConfig(),
            seed=seed,
        )
        return torch.cat([p.flatten() for p in net.parameters()])

    before = torch.get_rng_state()
    assert torch.equal(weights(5), weights(5)) and not torch.equal(weights(5), weights(6))
    assert torch.equal(before, torch.get_rng_state())


def _head(name: str, k: int = 5, d: int = 8, **kw):
    return HEADS.get(name)(d, k, HeadConfig(name=name, **kw))


@pytest.mark.parametrize("name", HEADS.names())
def test_every_head_gives_features_logits_and_its_classifier(name: str) -> None:
    head = _head(name).train()
    x = torch.randn(6, 8)
    h, z = head(x)
    w, b = head.classifier()
    assert h.shape == (6, 8) and z.shape == (6, 5) and w.shape == (5, 8)
    expected = h @ w.T + (0 if b is None else b)
    torch.testing.assert_close(z, expected, **TOL[torch.float32])


@pytest.mark.parametrize("name", HEADS.names())
def test_heads_compute_in_float32_under_autocast(name: str) -> None:
    head = _head(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, z = head(torch.randn(4, 8).bfloat16())
    assert h.dtype == z.dtype == torch.float32


def test_etf_head_is_the_seeded_ufm_etf_in_a_buffer() -> None:
    e_w, e_h = 2.0, 3.0
    head = _head("etf", k=5, d=8, etf_seed=11, e_w=e_w, e_h=e_h)
    expected = math.sqrt(e_w) * simplex_etf(5, 8, seed=11, dtype=torch.float32).T
    torch.testing.assert_close(head.weight, expected, **TOL[torch.float32])
    assert "weight" in head.state_dict() and "weight" not in dict(head.named_parameters())
    assert {n for n, _ in head.named_parameters()} == {"bn.weight", "bn.bias"}
    h, _ = head.train()(torch.randn(7, 8))
    torch.testing.assert_close(
        h.norm(dim=1), torch.full((7,), math.sqrt(e_h)), **TOL[torch.float32]
    )


def test_etf_needs_enough_feature_dimensions() -> None:
    with pytest.raises(ValueError, match=r"needs dim >= 99.*model.width=2"):
        build_network(
            "resnet8", "etf", in_channels=3, num_classes=100, width=1, head_cfg=HeadConfig(), seed=0
        )


def test_linear_head_is_learnable_with_bias() -> None:
    head = _head("linear")
    _, z = head(torch.randn(6, 8))
    z.square().sum().backward()
    assert head.fc.bias is not None
    assert all(
        p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters()
    )


def test_eval_network_refreshes_in_place() -> None:
    net = build_network(
        "resnet8", "etf", in_channels=3, num_classes=4, width=1, head_cfg=HeadConfig(), seed=0
    ).double()
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    evaluator = EvalNetwork(net)
    weights = [p for p in evaluator.module.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
        net.train()(torch.randn(8, 3, 10, 10, dtype=torch.float64))  # new BN statistics
    evaluator.refresh(net)
    assert all(a is b for a, b in zip(weights, evaluator.module.parameters(), strict=True))
    with torch.no_grad():
        torch.testing.assert_close(evaluator.run(x)[1], net.eval()(x)[1], **TOL[torch.float64])


@pytest.mark.parametrize("head", ["etf", "linear"])
def test_bf16_eval_copy_computes_what_autocast_does(head: str) -> None:
    net = build_network(
        "resnet8", head, in_channels=3, num_classes=4, width=1, head_cfg=HeadConfig(), seed=0
    )
    net.train()(torch.randn(8, 3, 12, 12))  # non-trivial BN statistics to fold
    images = torch.randint(0, 256, (10, 12, 12, 3), dtype=torch.uint8)
    normalizer = Normalizer.from_images(images)
    outputs = []
    for evaluator in (EvalNetwork(net), EvalNetwork(net, backbone_dtype=torch.bfloat16)):
        outputs.append(
            forward_all(
                evaluator.run,
                images,
                normalizer,
                batch_size=4,
                amp=True,
                dtype=evaluator.input_dtype,
            )
        )
    (h_autocast, z_autocast), (h_bf16, z_bf16) = outputs
    assert h_bf16.dtype == z_bf16.dtype == torch.float32
    torch.testing.assert_close(h_bf16, h_autocast, rtol=0, atol=0)
    torch.testing.assert_close(z_bf16, z_autocast, rtol=0, atol=0)


def test_class_correct_counts_per_class_and_takes_an_empty_shard() -> None:
    logits = torch.tensor([[2.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    labels = torch.tensor([0, 1, 0, 2])
    assert class_correct(logits, labels, 3).tolist() == [[1, 1, 0], [2, 1, 1]]
    # More processes than test images: a shard holds nothing and adds nothing.
    empty = class_correct(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), 3)
    assert empty.tolist() == [[0, 0, 0], [0, 0, 0]]


def test_a_fixed_gpu_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="every process on one GPU"):
        init_distributed("cuda:1")  # refused before any GPU or process group is touched


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 0), False), ((8, 0), True), ((9, 0), True)]
)
def test_auto_bf16_on_cuda_needs_bf16_tensor_cores(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: bool
) -> None:
    seen = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: seen.append(d) or capability)
    assert use_amp("auto", torch.device("cuda", 1)) is expected  # V100/T4 would only emulate it
    assert seen == [torch.device("cuda", 1)]  # the run's own GPU, not the current one
    assert use_amp("off", torch.device("cuda", 1)) is False
