"""Typed, validated experiment configuration.

One ``ExperimentConfig`` describes a whole run. It is built from nested
dataclasses (``schema``) so that every key has a type, a default and a unit in
its comment; ``loading`` reads files and overrides into it and rejects unknown
keys and wrong types, so a typo in a YAML file fails before anything is compiled.
"""

from mimic_mjx.config.loading import apply_overrides, from_dict, load
from mimic_mjx.config.randomize import RandomizeConfig
from mimic_mjx.config.schema import (
    BACKENDS,
    RENAMED_KEYS,
    AgentConfig,
    AngleKernel,
    AngularSpeedKernel,
    Cost,
    DistanceKernel,
    EnvConfig,
    ExperimentConfig,
    PPOConfig,
    RewardConfig,
    TerminationConfig,
    TrainConfig,
)
from mimic_mjx.config.task import TASK_NAMES, TaskConfig, TaskKernel, TaskRewardConfig, TaskTerm
from mimic_mjx.errors import ConfigError

__all__ = [
    "BACKENDS",
    "TASK_NAMES",
    "RENAMED_KEYS",
    "AgentConfig",
    "AngleKernel",
    "AngularSpeedKernel",
    "ConfigError",
    "Cost",
    "DistanceKernel",
    "EnvConfig",
    "ExperimentConfig",
    "PPOConfig",
    "RandomizeConfig",
    "RewardConfig",
    "TaskConfig",
    "TaskKernel",
    "TaskRewardConfig",
    "TaskTerm",
    "TerminationConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "load",
]
