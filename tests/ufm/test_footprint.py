"""The primal problem's memory estimate: ImageNet-LT size is refused up front with the numbers,
the default size passes, and nothing is written when it is refused."""

from __future__ import annotations

import pytest
import torch

from ufm.footprint import check_primal_fits, primal_footprint
from ufm.imbalance import exponential_counts
from ufm.simulate import SimulateConfig, main, run_simulation

IMAGENET_LT = exponential_counts(1000, 1280, 256)


def test_imagenet_lt_primal_does_not_fit_in_24_gb() -> None:
    fp = primal_footprint(IMAGENET_LT, 1024)
    assert fp.samples == 229_853
    assert fp.bytes > 24e9  # 12 copies of H (N, d) in float64 alone are 22.6 GB
    with pytest.raises(ValueError, match=r"does not fit.*GB.*float32.*ufm\.certify"):
        check_primal_fits(fp, 24e9)
    half = primal_footprint(IMAGENET_LT, 1024, torch.float32)
    assert half.bytes < fp.bytes / 1.9
    check_primal_fits(half, 24e9)  # fits, and is slow: about 1.4 TFLOP per iteration
    assert half.flops_per_iteration == pytest.approx(6 * 229_853 * 1024 * 1000)


def test_default_problem_fits() -> None:
    cfg = SimulateConfig()
    counts = exponential_counts(cfg.classes, cfg.n_max, cfg.imbalance)
    assert primal_footprint(counts, cfg.dim).bytes < 1e9


def test_refused_before_anything_is_written(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["--classes", "1000", "--n-max", "1280", "--imbalance", "256", "--dim", "4096"]
    assert main([*argv, "--out", str(out)]) == 2  # float64 ~ 113 GB, float32 ~ 57 GB
    assert "does not fit" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="does not fit"):
        run_simulation(SimulateConfig(classes=1000, n_max=1280, imbalance=256, dim=4096))
