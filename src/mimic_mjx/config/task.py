"""The ``task`` section: tasks without reference kinematics (``environments.tasks``, docs/transfer.md).

Everything with a unit is given relative to the body's size where it can be,
so one config serves a 1 g forelimb and a 300 g rat: the forelimb's size is
its reach (the farthest its end effector gets from the shoulder), a free
body's size its length (the standing pose's horizontal extent). Keys whose
default is 0 take the task's own default (see each task's docs).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from mimic_mjx.errors import ConfigError

#: The tasks ``task.name`` may name (environments/tasks.py registers one environment for each).
TASK_NAMES = ("reach_target", "go_to_target", "bowl_escape")


@dataclasses.dataclass(frozen=True)
class TaskKernel:
    weight: float = 0.0
    scale: float = 0.25  # fraction of the body's size at which the kernel drops to 1/e


@dataclasses.dataclass(frozen=True)
class TaskTerm:
    weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class TaskRewardConfig:
    """Weights of the tasks' reward terms (``environments.task_rewards``); a task uses its own subset."""

    reach: TaskKernel = TaskKernel(1.0, 0.5)  # reach_target: exp(-d^2 / (scale * reach)^2); broad: a pull from anywhere
    hold: TaskTerm = TaskTerm(1.0)  # reach/go-to: bonus per step within the success radius
    progress: TaskTerm = TaskTerm(1.0)  # go_to_target: speed towards the target, body lengths/s
    escape: TaskTerm = TaskTerm(1.0)  # bowl_escape: distance from the centre over the rim radius (at most 1)
    upright: TaskTerm = TaskTerm(0.5)  # free bodies: cosine of the tilt from standing (0 beyond 90 degrees)
    ctrl: TaskTerm = TaskTerm(0.01)  # cost: mean squared control (muscle excitation)
    energy: TaskTerm = TaskTerm(0.01)  # cost: summed |actuator power| over m g sqrt(g size)

    def terms(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def validate(self) -> None:
        for name, term in self.terms().items():
            if not term.weight >= 0:
                raise ConfigError(f"task.reward.{name}.weight must be zero or positive, got {term.weight}")
            if isinstance(term, TaskKernel) and not term.scale > 0:
                raise ConfigError(f"task.reward.{name}.scale must be positive, got {term.scale}")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    # The task (environments.tasks.TASKS); "" = imitation of reference clips.
    name: str = ""
    episode_s: float = 0.0  # episode length, s (0: the task's default)
    hold_s: float = 0.1  # success: the goal condition held this long without a break, s
    success_radius_m: float = 0.0  # reach/go-to success radius, m (0: success_radius of the body's size)
    success_radius: float = 0.0  # the auto radius as a fraction of the body's size (0: the task's default)
    # An explicit target instead of a random one each episode (m): reach_target a world point
    # (x, y, z), go_to_target a floor point (x, y) relative to the start. Empty: random.
    target_m: tuple[float, ...] = ()
    # go_to_target: the target's distance from the start, in body lengths.
    target_min_lengths: float = 1.0
    target_max_lengths: float = 3.0
    # bowl_escape: rim radius and depth of the bowl, in body lengths (the steepest slope
    # is about 14 degrees at the defaults, near dm_control's rodent escape bowl's 15).
    bowl_radius_lengths: float = 3.0
    bowl_depth_lengths: float = 0.4
    # Free bodies: fallen (episode terminated) when the root is lower than this fraction of its
    # standing height above the ground, or tilted further than fall_tilt_deg from standing.
    fall_height: float = 0.4
    fall_tilt_deg: float = 80.0
    settle_s: float = 0.3  # free bodies start standing: the rest pose settled on the ground this long, s
    reward: TaskRewardConfig = TaskRewardConfig()

    def validate(self) -> None:
        if self.name and self.name not in TASK_NAMES:
            close = difflib.get_close_matches(self.name, TASK_NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"task.name '{self.name}' is not a task{hint}; known tasks: {', '.join(TASK_NAMES)} "
                "(or leave it empty for imitation)"
            )
        for name in ("episode_s", "hold_s", "success_radius_m", "success_radius", "settle_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"task.{name} must be zero or positive, got {getattr(self, name)}")
        for name in ("target_min_lengths", "target_max_lengths", "bowl_radius_lengths", "bowl_depth_lengths"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"task.{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.fall_height < 1:
            raise ConfigError(f"task.fall_height must be in (0, 1) (of the standing height), got {self.fall_height}")
        if self.target_max_lengths < self.target_min_lengths:
            raise ConfigError(
                f"task.target_max_lengths ({self.target_max_lengths}) must be at least "
                f"task.target_min_lengths ({self.target_min_lengths})"
            )
        if self.target_m and len(self.target_m) not in (2, 3):
            raise ConfigError(
                f"task.target_m must be empty (random targets) or a point of 2 (x, y) or 3 (x, y, z) "
                f"coordinates in metres, got {list(self.target_m)}"
            )
        if not 0 < self.fall_tilt_deg <= 180:
            raise ConfigError(f"task.fall_tilt_deg must be in (0, 180], got {self.fall_tilt_deg}")
        self.reward.validate()
