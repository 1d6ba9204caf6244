"""What the lab runs: the recipes (presets), the training loop that runs lesson 06's pieces
for hours (trainer), checkpoints and run folders, the ``nanolm`` command (cli), ``make demo``,
evaluation, the ablation, benchmarks, profiling and the GPU check.

The lab imports the course and the shared modules, never the grading: a training run needs no
grader.
"""
