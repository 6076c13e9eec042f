"""The augmentation experiment: the grid of classifier runs, its report, and the demo pipeline.

``grid``: :class:`ExperimentConfig`, :func:`expand` into tasks, :func:`run_task`,
:func:`run_local`, :func:`aggregate`. ``report``: ``hpcgan report``. ``demo``: ``hpcgan demo``.
Layer: above ``classify`` and ``gan``; only ``cli`` and ``launch`` import it.
"""

from hpcgan.experiment.grid import ExperimentConfig, Task, aggregate, expand, load_experiment, run_local, run_task

__all__ = ["ExperimentConfig", "Task", "aggregate", "expand", "load_experiment", "run_local", "run_task"]
