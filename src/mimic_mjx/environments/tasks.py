"""The tasks without reference kinematics, by name: ``TASKS`` and ``make_task_env``.

Each task is a ``TaskEnv`` (environments/task_env.py) for one body: its
observation is the task's state (``ref_obs``, what a new high-level policy
reads) plus the imitation task's proprioception (``prop_obs``), so an
imitation run's decoder drives the body on it unchanged (``mimic transfer``).
docs/transfer.md describes each task.
"""

from __future__ import annotations

from mimic_mjx.bodies import BodyModel
from mimic_mjx.config import TASK_NAMES, ExperimentConfig
from mimic_mjx.environments.bowl import BowlEscape
from mimic_mjx.environments.locomotion import GoToTarget
from mimic_mjx.environments.reach import ReachTarget
from mimic_mjx.environments.task_env import HELD_OUT_STREAM, TaskEnv, TaskError, TaskState, held_out_targets

__all__ = [
    "HELD_OUT_STREAM",
    "TASKS",
    "TaskEnv",
    "TaskError",
    "TaskState",
    "held_out_targets",
    "make_task_env",
]

#: Task name -> its environment class.
TASKS: dict[str, type[TaskEnv]] = {cls.name: cls for cls in (ReachTarget, GoToTarget, BowlEscape)}
assert tuple(TASKS) == TASK_NAMES, "config.task.TASK_NAMES must list the tasks registered here"


def make_task_env(name: str, cfg: ExperimentConfig, body: BodyModel, control_dt: float) -> TaskEnv:
    """The task ``name`` for ``body`` at control step ``control_dt`` (s), set up from ``cfg`` (``task``, ``env``)."""
    if name not in TASKS:
        known = ", ".join(TASKS)
        what = "no task named (task.name is empty: that is imitation)" if not name else f"unknown task '{name}'"
        raise TaskError(f"{what}; known tasks: {known}")
    return TASKS[name](cfg, body, control_dt)
