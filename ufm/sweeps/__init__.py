"""Theory sweeps: computations of the layer-peeled models across a parameter, each written as a
run folder of kind "sweep" (`ufm.runfolder`) that `python -m figures --sweep NAME` draws.

    python -m ufm.sweeps minority-collapse          # -> runs/sweeps/minority-collapse/
    python -m ufm.sweeps all --size small           # every sweep, small: runs/sweeps/<name>-small/

- minority-collapse (`minority_ratio`): mean minority cosine against R (step) and rho
  (exponential), learnable LPM (certified line, gradient-descent markers) versus fixed ETF;
- hong-ling (`hong_ling_phase`): minority classifier spread against lambda / lambda*, several
  step profiles;
- seli (`seli_approach`): the normalized classifier Gram matrix of the bias-free regularized UFM
  as lambda -> 0, next to the SELI closed form;
- geometry (`geometry_k3_k4`): K = 3 (plane) and K = 4 (3-D) solutions, learnable versus fixed
  ETF.

Each module registers its computation with `register_sweep` (`sweep_registry`) when imported;
this package imports them in the order of "all". The computations are small dense problems;
they run with one torch thread by default, which is faster than several for K x K matrices and
keeps the time steady on a busy machine.
"""

# Importing a module registers its sweep; the order here is the order of "all".
# isort: off
from ufm.sweeps import minority_ratio  # noqa: F401
from ufm.sweeps import hong_ling_phase  # noqa: F401
from ufm.sweeps import seli_approach  # noqa: F401
from ufm.sweeps import geometry_k3_k4  # noqa: F401

# isort: on
from ufm.sweeps.sweep_registry import (
    KIND,
    SIZES,
    SWEEPS,
    Sweep,
    get_sweep,
    register_sweep,
    run_sweep,
    sweep_folder,
)

__all__ = [
    "KIND",
    "SIZES",
    "SWEEPS",
    "Sweep",
    "get_sweep",
    "register_sweep",
    "run_sweep",
    "sweep_folder",
]
