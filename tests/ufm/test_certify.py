"""`python -m ufm.certify`: the geometry computed in reduced coordinates is that of the factored
optimum, minority collapse shows on the predicted side of its threshold, bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ufm.certify import certified_geometry, certify, main
from ufm.convex import solve_lpm_convex
from ufm.imbalance import make_profile
from ufm.metrics import group_cosines


def test_geometry_matches_the_factored_optimum() -> None:
    profile = make_profile("exp", num_classes=12, n_max=500, ratio=50)
    counts = profile.counts
    res = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-11)
    geo = certified_geometry(res, counts, profile.minority, 1.0, 5.0)
    w, hbar = res.factors(16, balance=(1.0 / 5.0) ** 0.25)
    centred = hbar - hbar.mean(0)
    mean_w, max_w = group_cosines(w, profile.minority)
    mean_h, max_h = group_cosines(centred, profile.minority)
    assert geo["minority_cosine_w"] == pytest.approx(mean_w, abs=1e-8)
    assert geo["minority_max_cosine_w"] == pytest.approx(max_w, abs=1e-8)
    assert geo["minority_cosine_h"] == pytest.approx(mean_h, abs=1e-8)
    assert geo["minority_max_cosine_h"] == pytest.approx(max_h, abs=1e-8)
    np.testing.assert_allclose(geo["norm_w"], torch.linalg.norm(w, dim=1).numpy(), atol=1e-8)
    np.testing.assert_allclose(geo["norm_h"], torch.linalg.norm(centred, dim=1).numpy(), atol=1e-8)
    assert float((geo["norm_w"] ** 2).mean()) == pytest.approx(1.0, abs=1e-8)  # E_W budget


@pytest.mark.parametrize(("ratio", "collapsed"), [(5, False), (100, True)])
def test_minority_collapse_on_both_sides_of_the_threshold(ratio: int, collapsed: bool) -> None:
    # step profile 5 + 5: exact collapse from R0 = 12.19 on (proofs_checks.minority_collapse)
    profile = make_profile("step", num_classes=10, n_max=1000, ratio=ratio, num_minority=5)
    report, _ = certify(profile, tol=1e-10)
    assert report["relative_gap"] <= 1e-10
    if collapsed:
        assert report["minority_cosine_w"] > 1 - 1e-6
    else:
        assert report["minority_max_cosine_w"] < 1 - 1e-3


def test_command_writes_its_files(tmp_path) -> None:
    out = tmp_path / "cert"
    assert main(["--counts", "400,400,100,40,40,40", "--out", str(out)]) == 0
    report = json.loads((out / "certificate.json").read_text())
    assert report["distinct_counts"] == 3 and report["classes"] == 6
    assert report["lower_bound"] <= report["optimum"]
    assert report["minority"] == [4, 5]  # ufm.imbalance.minority_group: tail third, ties by index
    arrays = np.load(out / "geometry.npz")
    assert arrays["norm_w"].shape == (6,)


@pytest.mark.parametrize(
    "argv",
    [
        ["--counts", "5,a"],
        ["--counts", "5,0,3"],
        ["--tol", "0"],
        ["--e-h", "-1"],
        ["--counts", "5,3", "--counts-file", "x.txt"],
        ["--counts-file", "/no/such/file"],
    ],
)
def test_bad_input_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
