"""Figures of nc-verify, drawn from run folders; this package reads and draws, it solves nothing.

    python -m figures runs/ufm/<run>                  # one ufm.simulate run -> <run>/figures/
    python -m figures runs/deep/<a> runs/deep/<b>     # training runs compared side by side
    python -m figures --sweep minority-collapse       # a theory sweep of ufm.sweeps, drawn

Every figure is a function returning a matplotlib Figure; `draw_*` functions read a run folder
(through `ufm.runfolder.read_run`, via `runs`) and save them. Modules, one per concern:

- `style` (palette, rc settings, captions, saving PNG + PDF), `heatmaps` (class-by-class
  matrices), `runs` (what the figures need from run folders, `FigureDataError`);
- `simulation` (one ufm.simulate run), `training` (deep.train runs), `collapse` (deep.compare
  folders), `cost_growth` (the LPM solve time against K, from benchmarks.lpm_scale);
- `sweep_figures`: the theory sweeps. `python -m ufm.sweeps` computes them into run folders
  (run as a subprocess, never imported); one drawing module per sweep:
  `minority_ratio_figure`, `hong_ling_phase_figure`, `seli_approach_figure`,
  `geometry_k3_k4_figure`.

`simulation.draw_ufm_run` and `training.draw_deep_run` are the "nc_verify.figures" entry points
through which ufm.simulate and deep.train draw their runs (`ufm.runfolder.draw_figures`).
"""
