"""Training objectives: every registered one, and agreement with ufm's formulas."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from deep.heads import LinearHead
from deep.objectives import OBJECTIVES, ObjectiveContext, build_objective
from tests.conftest import TOL
from ufm.losses import batch_balanced_weights, cross_entropy, dot_regression

CTX = ObjectiveContext(
    num_classes=4,
    feature_dim=6,
    class_counts=(40, 20, 10, 5),
    epochs=3,
    head=LinearHead(6, 4).double(),  # for objectives that read the classifier
)


def _batch(seed: int = 0, b: int = 9):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(b, 6, generator=gen, dtype=torch.float64)
    z = torch.randn(b, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y_a = torch.randint(0, 4, (b,), generator=gen)
    y_b = y_a[torch.randperm(b, generator=gen)]
    return h, z, y_a, y_b


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_is_a_differentiable_scalar(name: str) -> None:
    h, z, y_a, y_b = _batch()
    loss = build_objective(name, CTX)(h, z, y_a, y_b, 0.3)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_mixup_is_the_weighted_pair_of_label_losses(name: str) -> None:
    h, z, y_a, y_b = _batch(1)
    obj = build_objective(name, CTX)
    lam = 0.37
    mixed = obj(h, z, y_a, y_b, lam)
    expected = lam * obj(h, z, y_a, y_a, 1.0) + (1 - lam) * obj(h, z, y_b, y_b, 1.0)
    torch.testing.assert_close(mixed, expected, **TOL[torch.float64])
    assert obj(h, z, y_a, y_b, 1.0) == obj(h, z, y_a, y_a, 1.0)


def test_objectives_are_ufm_formulas() -> None:
    h, z, y, _ = _batch(2)
    ctx = ObjectiveContext(4, 6, (1, 1, 1, 1), 1, e_w=2.0, e_h=8.0)
    c = 4.0  # sqrt(E_W E_H)
    cases = {
        "ce": cross_entropy(z, y).mean(),
        "dr": dot_regression(z, y, c).mean(),
        "dr-balanced": (
            batch_balanced_weights(y, 4, torch.float64) * dot_regression(z, y, c)
        ).mean(),
    }
    for name, expected in cases.items():
        got = build_objective(name, ctx)(h, z, y, y, 1.0)
        torch.testing.assert_close(got, expected, **TOL[torch.float64])


def test_balanced_dr_gives_each_present_class_equal_weight() -> None:
    z = torch.zeros(6, 3, dtype=torch.float64)  # DR = c/2 for every sample
    y = torch.tensor([0, 0, 0, 0, 1, 2])
    per_class = torch.zeros(3, dtype=torch.float64)
    obj = build_objective("dr-balanced", ObjectiveContext(3, 2, (4, 1, 1), 1))
    per_class.index_add_(0, y, obj.per_sample(None, z, y))
    torch.testing.assert_close(
        per_class, torch.full((3,), per_class[0].item(), dtype=torch.float64)
    )


def test_plain_losses_take_no_options() -> None:
    ctx = ObjectiveContext(4, 6, (1, 1, 1, 1), 1, options={"lam": 0.1})
    with pytest.raises(ValueError, match="takes no options"):
        build_objective("ce", ctx)
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        build_objective("focal", CTX)


def test_method_modules_stand_on_the_base_not_on_the_registry_reader() -> None:
    """No import circle: the base imports no method, a method module imports the base only,
    and deep.objectives (which imports every method module) sees all of them."""
    code = (
        "import sys\n"
        "import deep.objective_base\n"
        "methods = {'deep.objectives', 'deep.rebalancing', 'deep.nc_regularizers'}\n"
        "assert not methods & set(sys.modules), sorted(methods & set(sys.modules))\n"
        "import deep.rebalancing, deep.nc_regularizers\n"
        "assert 'deep.objectives' not in sys.modules\n"
        "from deep.objectives import OBJECTIVES\n"
        "print(' '.join(OBJECTIVES.names()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == OBJECTIVES.names()
    assert {"ce", "dr", "ldam-drw", "allnc", "ce-nc-reg"} <= set(OBJECTIVES.names())
