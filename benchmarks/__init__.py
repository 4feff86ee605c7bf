"""The performance suite: `python -m benchmarks [--quick] [--json FILE]`.

One module per measurement, each exposing a ``measure_*`` function that returns a flat dict of
named figures (floats), so the suite, the tests and a newcomer can run any one alone:

- ``training``: training-step and forward-only images/s of ``shg_model`` (fast path) against the
  plain-PyTorch baseline in ``reference``, the loss agreement after one step, and the fraction
  of the machine's fp32 matmul peak the step reaches (``peak``);
- ``memory``: peak resident memory of a training step, each model in a fresh subprocess;
- ``heatmaps``: ``dataprep.heatmaps.render_heatmaps`` against a dense full-grid renderer and
  the memory-write bound of its output;
- ``data_pipeline``: ``shg prepare`` rows/s, parquet bytes per row, and the training stream's
  images/s against what the training step consumes.

Ratios are always taken side by side in the same run: contenders are interleaved round-robin
and medians compared, so load on the shared machine hits both sides alike. Nothing here
asserts a timing; targets are printed next to the figures. Run under
``flock /tmp/shg-heavy.lock`` on a shared machine.
"""
