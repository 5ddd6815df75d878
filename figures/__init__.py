"""Figures of nc-verify, regenerated from saved run folders (and cached theory sweeps).

    python -m figures runs/ufm/<run>                  # one ufm.simulate run -> <run>/figures/
    python -m figures runs/deep/<a> runs/deep/<b>     # training runs compared side by side
    python -m figures --sweep minority-collapse       # compute (cached in runs/sweeps/), draw

Modules, one per concern: `style` (palette, rc settings, captions, saving PNG + PDF), `runs`
(reading run folders, `FigureDataError`), `heatmaps` (class-by-class matrices), `ufm` (the
figures of one simulation run), `training` (deep runs), `cache` and `sweeps` (computed
sweeps), and one module per sweep: `minority`, `hong_ling`, `seli`, `geometry`.
Every figure is a function returning a matplotlib Figure; `draw_*` functions save them.
"""
