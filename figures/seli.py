"""SELI (Thrampoulidis et al., NeurIPS 2022): the lambda -> 0 geometry of the bias-free UFM.

For long-tailed counts the bias-free regularized UFM is solved to a certified optimum at
lambdas from large to small (`ufm.convex.solve_regularized_convex(..., bias=False)`). With
Y = Z D^{1/2} = U S V^T the classifier Gram matrix is W W^T = U S U^T (balanced factors,
`ufm.prediction.gram_factors`), drawn normalized (Frobenius norm 1). Its limit is compared with

- the max-margin program that lambda -> 0 leads to (`ufm.convex.cvxpy_ufm_svm`), and
- the SELI closed form (Zbar D Zbar)^{1/2}, Zbar = I - 1 1^T/K (`ufm.theory.seli_classifier_gram`),
  with mean logits proportional to Zbar (`ufm.theory.seli_mean_logits`).

The approach is slow: the margins of the regularized solutions differ by about
log(n_k)/log(1/lambda), so the Gram matrix is still visibly off at lambda = 1e-8 while the
max-margin solution matches SELI to solver precision. Against 1/log(1/lambda) the distance to
SELI is a straight line through the max-margin point, which is how the figure shows it. A model
with a free bias has a different limit (the bias absorbs part of the imbalance), which is why the
bias is removed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.linalg import sqrtm

from figures.heatmaps import draw_matrix
from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    styled,
)
from ufm.convex import solve_regularized_convex
from ufm.convex_cvxpy import cvxpy_ufm_svm
from ufm.imbalance import make_profile
from ufm.metrics import gram_group_cosines
from ufm.prediction import gram_factors
from ufm.theory import seli_classifier_gram, seli_mean_logits

__all__ = ["DEFAULT", "SMALL", "compute", "draw"]

DEFAULT: dict[str, Any] = {
    "classes": 10,
    "n_max": 5000,  # CIFAR-10-LT counts at rho = 100
    "ratio": 100.0,
    "lambdas": [3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9],
    "tol": 1e-9,  # relative certified gap of the convex form
    "heatmap_lambdas": [1e-3, 1e-9],  # drawn next to the max-margin limit and SELI
}
SMALL: dict[str, Any] = DEFAULT | {
    "classes": 4,
    "n_max": 100,
    "ratio": 10.0,
    "lambdas": [1e-2, 1e-4],
    "heatmap_lambdas": [1e-2, 1e-4],
}


def _unit(m: np.ndarray) -> np.ndarray:
    """m / ||m||_F; NaN when m = 0 (everything collapsed to the origin)."""
    norm = np.linalg.norm(m)
    return m / norm if norm > 0 else np.full_like(m, np.nan)


def _classifier_gram(z: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Normalized (Y Y^T)^{1/2}, Y = Z D^{1/2}: the classifier Gram that logits Z (K, K) imply."""
    return _unit(gram_factors(z, counts)[0])


def _limit_gram(z: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`_classifier_gram` of the max-margin logits by a Schur square root. Its Y has rank K - 1
    (1^T Y = 0), where a square root through eigenvalues of Y Y^T is accurate to ~1e-8 only,
    about the distance to SELI measured here (3.4e-9 at the defaults)."""
    root = np.real(sqrtm(z @ np.diag(counts.astype(float)) @ z.T))
    return _unit((root + root.T) / 2)


def _solve(counts: np.ndarray, lam: float, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalized Gram of W, normalized mean logits Z) of the certified bias-free optimum."""
    z = solve_regularized_convex(counts, lam, 0.0, tol=tol, bias=False).z.numpy()
    return _classifier_gram(z, counts), _unit(z)


def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Gram matrices and distances to SELI along lambda, and the max-margin limit."""
    profile = make_profile(
        "exp", num_classes=params["classes"], n_max=params["n_max"], ratio=params["ratio"]
    )
    counts, minority = profile.counts, profile.minority
    seli_gram = seli_classifier_gram(counts)
    seli_z = seli_mean_logits(len(counts))
    out: dict[str, Any] = {"counts": counts.tolist(), "minority": minority.tolist(), "path": []}
    for lam in params["lambdas"]:
        gram, z = _solve(counts, lam, params["tol"])
        out["path"].append(
            {
                "lambda": lam,
                "gram": gram.tolist(),
                "gram_distance": float(np.linalg.norm(gram - seli_gram)),
                "logit_distance": float(np.linalg.norm(z - seli_z)),
                "minority_cos": gram_group_cosines(gram, minority)[0],
            }
        )
    _, z_svm = cvxpy_ufm_svm(counts)
    svm_gram = _limit_gram(z_svm, counts)
    out["limit"] = {
        "gram": svm_gram.tolist(),
        "gram_distance": float(np.linalg.norm(svm_gram - seli_gram)),
        "logit_distance": float(np.linalg.norm(_unit(z_svm) - seli_z)),
        "minority_cos": gram_group_cosines(svm_gram, minority)[0],
    }
    out["seli"] = {
        "gram": seli_gram.tolist(),
        "minority_cos": gram_group_cosines(seli_gram, minority)[0],
    }
    return out


def _heatmap_row(fig: Any, results: dict[str, Any], params: dict[str, Any]) -> list[Axes]:
    """Normalized Gram matrices: two lambdas of the path, the max-margin limit, SELI."""
    counts = np.asarray(results["counts"])
    by_lambda = {p["lambda"]: p for p in results["path"]}
    panels = [
        (by_lambda[lam]["gram"], f"$\\lambda$ = {lam:g}") for lam in params["heatmap_lambdas"]
    ]
    panels += [(results["limit"]["gram"], "max-margin"), (results["seli"]["gram"], "SELI")]
    vmax = max(np.nanmax(np.abs(np.asarray(m))) for m, _ in panels)
    axes = fig.subplots(1, len(panels))
    image = None
    for j, (ax, (matrix, title)) in enumerate(zip(axes, panels, strict=True)):
        image = draw_matrix(
            ax,
            np.asarray(matrix),
            counts,
            minority=results["minority"],
            vmin=-vmax,
            vmax=vmax,
            ylabels=j == 0,
        )
        ax.set_title(title, fontsize=7.5)
        ax.set_xlabel("class ($n_k$)")
    axes[0].set_ylabel("class ($n_k$)")
    fig.colorbar(image, ax=axes, shrink=0.85, label="$W W^T / \\|W W^T\\|_F$")
    return list(axes)


def _inverse_log(lam: np.ndarray) -> np.ndarray:
    return 1.0 / np.log(1.0 / np.asarray(lam, dtype=float))


def _distance_panel(ax: Axes, results: dict[str, Any], path: list[dict]) -> None:
    """Distances to SELI against 1/log(1/lambda): straight lines into the max-margin point."""
    x = _inverse_log([p["lambda"] for p in path])
    series = (
        ("gram_distance", "classifier Gram", OKABE_ITO["blue"], "o"),
        ("logit_distance", "mean logits", OKABE_ITO["vermillion"], "s"),
    )
    for key, label, color, marker in series:
        y = np.array([p[key] for p in path])
        ax.plot(x, y, color=color, marker=marker, ms=3.5, label=f"{label}, regularized")
        slope = float(x[-4:] @ y[-4:] / (x[-4:] @ x[-4:]))  # through the origin, small lambdas
        grid = np.linspace(0, x.max(), 50)
        ax.plot(
            grid,
            slope * grid,
            color=color,
            lw=0.8,
            ls="--",
            label=f"{slope:.2f} / log(1/$\\lambda$)",
        )
        ax.plot(
            [0],
            [results["limit"][key]],
            ls="none",
            marker="*",
            ms=9,
            color=color,
            mec="black",
            mew=0.5,
            label=f"{label}, max-margin ($\\lambda \\to 0$)",
        )
    ax.set_xlim(left=-0.003)
    ax.set_ylim(bottom=-0.01)
    ax.set_xlabel("1 / log(1/$\\lambda$)     ($\\lambda \\to 0$ at the left)")
    ax.set_ylabel("Frobenius distance to SELI")
    ax.legend(loc="upper left", fontsize=6)
    ax.set_title("distance to SELI")


def _cosine_panel(ax: Axes, results: dict[str, Any], path: list[dict]) -> None:
    lam = np.array([p["lambda"] for p in path])
    ax.plot(
        lam,
        [p["minority_cos"] for p in path],
        color=OKABE_ITO["vermillion"],
        marker="^",
        ms=3.5,
        label="regularized UFM (no bias)",
    )
    ax.axhline(
        results["seli"]["minority_cos"],
        color=OKABE_ITO["blue"],
        ls="--",
        lw=1,
        label=f"SELI: {results['seli']['minority_cos']:.3f}",
    )
    ax.axhline(1.0, color="#777777", lw=0.7, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(-0.05, 1.08)
    ax.set_xlabel("$\\lambda = 2\\sqrt{\\lambda_W \\lambda_H}$  (decreasing)")
    ax.set_ylabel("mean minority classifier cosine")
    ax.legend(loc="center right", fontsize=6.5)
    ax.set_title("minority classifiers")


@styled
def plot_seli(results: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Gram heatmaps (two lambdas, max-margin, SELI) over the approach to SELI and the
    minority cosine along lambda."""
    path = [p for p in results["path"] if np.isfinite(p["gram_distance"])]
    fig = new_figure(WIDTH_DOUBLE, 5.0)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.25])
    heat = _heatmap_row(top, results, params)
    ax_d, ax_c = bottom.subplots(1, 2)
    _distance_panel(ax_d, results, path)
    _cosine_panel(ax_c, results, path)
    label_panels([*heat, ax_d, ax_c])
    counts = results["counts"]
    fig.suptitle(
        f"SELI geometry as $\\lambda \\to 0$ — bias-free regularized UFM, K = {len(counts)}, "
        f"exponential profile $\\rho$ = {counts[0] / counts[-1]:g}, N = {sum(counts)}"
    )
    add_caption(fig, _caption(results, path, params))
    return fig


def _caption(results: dict[str, Any], path: list[dict], params: dict[str, Any]) -> str:
    last, limit = path[-1], results["limit"]
    return (
        f"Certified optima of the convex form (relative gap <= {params['tol']:g}) at "
        f"{len(path)} values of lambda; classes head to tail, minority (tail third) outlined. "
        f"At lambda = {last['lambda']:g} the classifier Gram matrix is {last['gram_distance']:.3f} "
        f"from SELI and the normalized mean logits {last['logit_distance']:.3f} from "
        f"I - 11^T/K; the max-margin limit (cvxpy) is {limit['gram_distance']:.1e} and "
        f"{limit['logit_distance']:.1e} from them. The distance falls like 1/log(1/lambda), "
        f"hence the slow approach. Minority cosine: SELI {results['seli']['minority_cos']:.3f}, "
        f"max-margin {limit['minority_cos']:.3f}."
    )


def draw(results: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, Figure]]:
    return [("seli_gram", plot_seli(results, params))]
