"""Every tolerance of the checks, in one place, each with the reason for its size.

All computations are float64 (unit roundoff eps = 1.1e-16). Three kinds of numbers appear:

- identities computed two ways (a closed form against its numerical twin): bounded by rounding;
- solver outputs: bounded by the solver's own certificate (a Frank-Wolfe or Lagrangian duality
  gap, or the norm of the gradient mapping), converted into a distance where the problem's growth
  around its minimizer is known;
- margins: how far a quantity must be from a threshold for "collapsed" and "not collapsed" to be
  told apart, set orders of magnitude away from the solver's precision.
"""

from __future__ import annotations

# --- rounding ---------------------------------------------------------------------------------
# Identities of O(1) entries built from O(K) float64 operations, K <= 100: rounding is at most a
# few K eps ~ 1e-14; 1e-12 leaves a factor 100 and still catches any error in a formula.
EXACT = 1e-12
# Hand-written gradients against autograd, relative to the gradient's norm: both evaluate the
# same sums in a different order, so they agree to a few eps times the number of terms.
AUTOGRAD = 1e-12
# A closed-form optimum must lie in [certified lower bound, value reached]; both ends sum up to
# 2e4 per-sample losses (pairwise summation: error ~ eps log2(N) |f|), so allow 1e-12 max(1, |f|).
BRACKET = 1e-12

# --- first-order solvers (ufm.solvers, ufm.convex) ------------------------------------------------
# Relative duality gap to which every convex form is solved: the certificate f - lower_bound.
CERTIFIED_GAP = 1e-10
# A non-convex solver (random start, stopped on the gradient mapping) reaches the certified convex
# optimum when its value is within this relative distance of the convex lower bound.
NONCONVEX_GAP = 1e-8
# Stopping rule on the gradient mapping of the non-convex (W, H[, b]) problems.
GRAD_TOL = 1e-9
# Feature distance to Theorem 1's minimizer, relative to sqrt(E_H). A per-sample Frank-Wolfe gap
# g_i bounds it: CE grows quadratically around h* in the feasible ball, with the Lagrangian's
# modulus mu = ||grad CE(h*)|| / (2 ||h*||), so ||h_i - h*|| <= sqrt(N g_i / mu); g_i is
# measured, not assumed. Its rounding error (8 eps of its terms, added to keep the radius an
# upper bound) floors the radius at ~sqrt(32 eps) ~ 1e-7 whatever K and N: a factor 8 margin.
FEATURE_CE = 1e-6
# Dot regression grows only quartically in the angle to w*_k (flat orthogonally to w*_k):
# ||h - h*||^2 <= 2 sqrt(E_H/E_W) sqrt(2 c DR_i), and DR_i <= N f. At f = DR_TARGET and
# N <= 2500, c = sqrt(5): ||h - h*|| / sqrt(E_H) <= (4 sqrt(2 c N f) / sqrt(E_H))^(1/2) ~ 1e-4;
# the radii measured are 1e-5..7e-5, and each sample's own radius is checked too.
FEATURE_DR = 2e-4
# DR's objective is >= 0, so its value is its own certificate. The solver stops at DR_TARGET
# (below ~1e-22 the line search can no longer resolve the decrease of f in float64); a problem
# whose optimum were not 0 would stall far above DR_VALUE = 100 DR_TARGET.
DR_TARGET = 1e-20
DR_VALUE = 1e-18
# NC1 = tr(Sigma_W Sigma_B^+)/K is quadratic in the feature errors: with errors <= 1e-6 relative
# to between-class distances O(1), NC1 <= ~1e-12; 1e-10 leaves margin for tr() over K classes.
NC1 = 1e-10
# Logits / Gram matrices of a certified solution against a closed form, relative (Frobenius).
# A relative gap delta bounds the distance to the minimizer by sqrt(2 delta f / alpha) (alpha:
# local strong convexity, >= 1e-3 in these problems), ~1e-3 at delta = 1e-10 in the worst case;
# measured distances are 1e-8..1e-6, so 1e-5 is both safe and tight enough to detect any
# error in a closed form (those are O(1e-2) or larger).
SOLUTION = 1e-5

# --- independent solvers ----------------------------------------------------------------------
# cvxpy with Clarabel (interior point, default gap/feasibility tolerances 1e-8): values agree
# with the certified first-order optimum to ~1e-9 in practice; 1e-7 relative is their stated
# accuracy with a margin.
CVXPY = 1e-7
# The reference value 0.5597815 is quoted to 7 decimals: half a unit of the last digit.
REFERENCE_ROUNDING = 5e-8

# --- collapse margins -------------------------------------------------------------------------
# "Collapsed": the rows of a group differ by at most this fraction of the whole matrix (a
# certified solution of a collapsed problem shows 1e-15..1e-8).
COLLAPSED = 1e-6
# "Not collapsed": the rows of a group differ by at least this fraction (solutions 10% on the
# wrong side of a threshold show 3e-2..0.5): three orders of magnitude above COLLAPSED.
SEPARATED = 1e-3
