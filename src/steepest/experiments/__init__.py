"""Experiments: tasks (data + model + metric), the training runner, tuning, reports, the CLI.

``steepest compare --task T --optimizers adamw,muon`` (see :mod:`steepest.experiments.cli`);
the tasks are in :data:`steepest.experiments.tasks.TASKS`; optimizers are built only in
:mod:`steepest.experiments.optimizers`.
"""
