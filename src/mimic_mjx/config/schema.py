"""The experiment config's sections: every key with its type, default, unit and bounds.

Each section validates its own values; reading files and ``section.key=value``
overrides into these classes lives in ``mimic_mjx.config.loading``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

from mimic_mjx.config.randomize import RandomizeConfig
from mimic_mjx.config.task import TaskConfig
from mimic_mjx.errors import ConfigError

#: Physics backends ``env.backend`` accepts (see mimic_mjx.environments.physics).
BACKENDS = ("auto", "native", "mjx", "warp")
CLIP_WEIGHTS = ("uniform", "length", "failure")  # env.clip_weights


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    body: str = "mouse_forelimb"
    # Physics backend: native (MuJoCo C engine on host threads), mjx, warp, or auto
    # (mjx on a GPU, native on a CPU).
    backend: str = "auto"
    native_threads: int = 0  # host threads of the native backend (0: all cores)
    horizon: int = 5  # reference frames the policy sees ahead
    substeps: int = 5  # physics steps per control step
    control_every: int = 1  # clip frames per control step (control at clip rate / this)
    reset_noise_rad: float = 0.0  # uniform noise on the initial joint angles
    # Fraction of episodes that start at a clip's first frame (the rest start at a
    # uniformly drawn frame). Evaluation tracks whole clips from their first frame,
    # and recorded clips often begin mid-movement, their hardest part.
    first_frame_start_prob: float = 0.0
    # Fraction of episodes that start 1 to ``failure_start_back_steps`` control
    # steps before a place where the policy recently lost tracking
    # (environments.starts); the rest start as above.
    failure_start_prob: float = 0.0
    failure_start_back_steps: int = 20
    # How an episode's clip is drawn (environments/starts.py draw_clip): "uniform" (every clip
    # alike), "length" (by its frames: start frames uniform over all clips) or "failure" (half
    # by the clip's recent terminations, half uniform).
    clip_weights: str = "uniform"
    # How policy outputs become controls (environments/actions.py): "absolute" (each actuator's whole
    # range) or "relative" (position servos' targets within action_range_rad of the joint's angle).
    action: str = "absolute"
    action_range_rad: float = 0.5

    def validate(self) -> None:
        _positive(self, "horizon", "substeps", "control_every", "failure_start_back_steps", "action_range_rad")
        if self.action not in ("absolute", "relative"):
            raise ConfigError(f"env.action must be 'absolute' or 'relative', got '{self.action}'")
        _non_negative(self, "reset_noise_rad", "native_threads")
        if self.backend not in BACKENDS:
            close = difflib.get_close_matches(self.backend, BACKENDS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"env.backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'{hint}")
        if self.clip_weights not in CLIP_WEIGHTS:
            raise ConfigError(f"env.clip_weights must be one of {', '.join(CLIP_WEIGHTS)}, got '{self.clip_weights}'")
        if self.clip_weights == "failure" and not self.failure_start_prob > 0:
            # Training keeps the termination memory only for failure starts (training/ppo.py).
            raise ConfigError(
                "env.clip_weights: failure draws clips by the termination memory, which is kept only "
                "when env.failure_start_prob > 0; set it (e.g. 0.25) or use clip_weights uniform or length"
            )
        for name in ("first_frame_start_prob", "failure_start_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"env.{name} must be in [0, 1], got {getattr(self, name)}")


# -- reward terms ------------------------------------------------------------
# Each tracking term is a Gaussian kernel weight * exp(-err^2 / scale^2) of an
# error in physical units; each cost term is -weight * (a cost). The functions
# live in mimic_mjx.environments.rewards, one per field of RewardConfig.


@dataclasses.dataclass(frozen=True)
class AngleKernel:
    weight: float = 0.0
    scale_rad: float = 0.15


@dataclasses.dataclass(frozen=True)
class AngularSpeedKernel:
    weight: float = 0.0
    scale_rad_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class DistanceKernel:
    weight: float = 0.0
    scale_m: float = 0.01


@dataclasses.dataclass(frozen=True)
class Cost:
    weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    joint: AngleKernel = AngleKernel(1.0, 0.15)  # RMS hinge-angle error
    joint_vel: AngularSpeedKernel = AngularSpeedKernel(0.0, 5.0)  # RMS hinge-velocity error
    body: DistanceKernel = DistanceKernel(0.0, 0.01)  # tracked bodies relative to the root
    end_effector: DistanceKernel = DistanceKernel(1.0, 0.0005)  # end effectors relative to the root
    # Registered markers vs the recorded keypoints (world frame): what was measured.
    keypoint: DistanceKernel = DistanceKernel(0.0, 0.001)
    root_pos: DistanceKernel = DistanceKernel(0.0, 0.02)  # free-root bodies only
    root_angle: AngleKernel = AngleKernel(0.0, 0.3)  # free-root bodies only
    ctrl: Cost = Cost(0.02)  # per mean squared control
    ctrl_change: Cost = Cost(0.02)  # per mean squared change of control per control step
    energy: Cost = Cost(0.1)  # per watt of summed absolute actuator power

    def terms(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def validate(self) -> None:
        for name, term in self.terms().items():
            _non_negative(term, "weight", section=f"reward.{name}.")
            _positive(
                term,
                *(f.name for f in dataclasses.fields(term) if f.name.startswith("scale")),
                section=f"reward.{name}.",
            )


@dataclasses.dataclass(frozen=True)
class TerminationConfig:
    """An episode ends (terminated) when any of these is exceeded."""

    max_joint_error_rad: float = 0.6  # RMS over joints
    max_ee_error_m: float = 0.003  # mean end-effector error relative to the root
    max_body_error_m: float = 1.0  # mean tracked-body error relative to the root
    max_root_error_m: float = 1.0  # root distance from the reference (free-root bodies)
    max_root_angle_rad: float = 4.0  # root orientation error (above pi: never)
    max_root_drop_m: float = 1.0  # falling: root below the reference root by more than this
    max_keypoint_error_m: float = 1.0  # mean marker distance to the recorded keypoints
    # Joint angles are inferred from keypoints; some (e.g. rotation of a straight limb
    # about its own axis) are unobservable. Where a clip has recorded keypoints, a
    # joint error alone does not end an episode while the keypoints are tracked.
    joints_only_with_keypoints_lost: bool = True

    def validate(self) -> None:
        _positive(self, *(f.name for f in dataclasses.fields(self) if f.name.startswith("max_")))


# Keys of earlier releases and where they live now.
RENAMED_KEYS = {
    **{
        f"env.{old}": new
        for old, new in {
            "joint_scale_rad": "reward.joint.scale_rad",
            "joint_weight": "reward.joint.weight",
            "joint_vel_scale_rad_s": "reward.joint_vel.scale_rad_s",
            "joint_vel_weight": "reward.joint_vel.weight",
            "body_scale_m": "reward.body.scale_m",
            "body_weight": "reward.body.weight",
            "ee_scale_m": "reward.end_effector.scale_m",
            "ee_weight": "reward.end_effector.weight",
            "root_pos_scale_m": "reward.root_pos.scale_m",
            "root_pos_weight": "reward.root_pos.weight",
            "root_angle_scale_rad": "reward.root_angle.scale_rad",
            "root_angle_weight": "reward.root_angle.weight",
            "ctrl_cost": "reward.ctrl.weight",
            "ctrl_change_cost": "reward.ctrl_change.weight",
            "energy_cost": "reward.energy.weight",
        }.items()
    },
    # Every termination key once lived in env (or would be looked for there).
    **{f"env.{f.name}": f"termination.{f.name}" for f in dataclasses.fields(TerminationConfig)},
}


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    # Decoders ``decoder`` accepts (a class constant, not a config key: it has no annotation).
    DECODERS = ("mlp", "lstm", "gru")

    encoder_layers: tuple[int, ...] = (256, 256)
    decoder_layers: tuple[int, ...] = (256, 256)
    value_layers: tuple[int, ...] = (256, 256)
    latent_dim: int = 16
    ar1_alpha: float = 0.9  # AR(1) prior on the latent: z_t ~ N(alpha z_{t-1}, 1 - alpha^2)
    kl_weight: float = 1e-3  # final weight of the latent KL term
    kl_ramp_steps: int = 1_000_000  # environment steps over which the KL weight ramps from 0
    init_log_std: float = -0.5
    # The decoder: "mlp" (stateless), or a recurrent cell ("lstm", "gru") of recurrent_size units
    # reading [latent, proprioception] whose output decoder_layers map to the action (agents/networks.py).
    decoder: str = "mlp"
    recurrent_size: int = 128  # units of the recurrent cell (unused by "mlp")

    def validate(self) -> None:
        _positive(self, "latent_dim", "recurrent_size")
        _non_negative(self, "kl_weight", "kl_ramp_steps")
        if self.decoder not in self.DECODERS:
            close = difflib.get_close_matches(str(self.decoder), self.DECODERS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"agent.decoder must be one of {', '.join(self.DECODERS)}, got '{self.decoder}'{hint}")
        for name in ("encoder_layers", "decoder_layers", "value_layers"):
            layers = getattr(self, name)
            if not layers or any(w <= 0 for w in layers):
                raise ConfigError(f"agent.{name} must be a non-empty list of positive widths, got {list(layers)}")
        if not 0.0 <= self.ar1_alpha < 1.0:
            raise ConfigError(f"agent.ar1_alpha must be in [0, 1), got {self.ar1_alpha}")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 512
    unroll_length: int = 20
    num_minibatches: int = 8
    update_epochs: int = 4
    learning_rate: float = 3e-4
    # Learning rate reached at train.total_steps, linearly from learning_rate
    # (None: constant). A run stopped earlier by train.max_minutes ends above it;
    # resuming with a longer total_steps stretches the schedule.
    learning_rate_end: float | None = None
    discount: float = 0.95
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    entropy_cost: float = 1e-3
    value_cost: float = 0.5
    max_grad_norm: float = 1.0
    reward_scaling: float = 1.0

    def validate(self) -> None:
        _positive(
            self,
            "num_envs",
            "unroll_length",
            "num_minibatches",
            "update_epochs",
            "learning_rate",
            "clip_epsilon",
            "max_grad_norm",
            "reward_scaling",
        )
        _non_negative(self, "entropy_cost", "value_cost")
        if self.learning_rate_end is not None and not 0.0 <= self.learning_rate_end <= self.learning_rate:
            raise ConfigError(
                f"ppo.learning_rate_end must be in [0, ppo.learning_rate ({self.learning_rate:g})], "
                f"got {self.learning_rate_end:g}; leave it out for a constant learning rate"
            )
        for name in ("discount", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"ppo.{name} must be in [0, 1], got {getattr(self, name)}")
        if (self.num_envs * self.unroll_length) % self.num_minibatches:
            raise ConfigError(
                f"ppo.num_envs * ppo.unroll_length ({self.num_envs * self.unroll_length}) must be divisible by "
                f"ppo.num_minibatches ({self.num_minibatches})"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    total_steps: int = 2_000_000  # environment (control) steps
    seed: int = 0
    checkpoint_every_updates: int = 50
    log_every_updates: int = 5
    max_minutes: float = 0.0  # stop after this wall time (0: no limit); a checkpoint is written
    tensorboard: bool = True  # event files in RUN/tensorboard
    wandb: bool = False  # also log to Weights & Biases (pip install wandb)
    wandb_project: str = "mimic-mjx"

    def validate(self) -> None:
        _positive(self, "total_steps", "checkpoint_every_updates", "log_every_updates")
        _non_negative(self, "max_minutes")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    train_clips: tuple[str, ...] = ()  # clip files (HDF5); empty with --demo data
    env: EnvConfig = EnvConfig()
    reward: RewardConfig = RewardConfig()
    termination: TerminationConfig = TerminationConfig()
    agent: AgentConfig = AgentConfig()
    ppo: PPOConfig = PPOConfig()
    train: TrainConfig = TrainConfig()
    task: TaskConfig = TaskConfig()  # a task without reference kinematics (docs/transfer.md); "" = imitation
    randomize: RandomizeConfig = RandomizeConfig()  # domain randomisation in training (config/randomize.py)

    def validate(self) -> ExperimentConfig:
        self.env.validate()
        self.reward.validate()
        self.termination.validate()
        self.agent.validate()
        self.ppo.validate()
        self.train.validate()
        self.task.validate()
        self.randomize.validate(self.env.reset_noise_rad)
        if not self.env.body:
            raise ConfigError("env.body must name a body (see `mimic bodies`)")
        # Whether env.body names a known body is checked one layer up (bodies.check_config): bodies
        # read their default configs from here.
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)


def _positive(obj, *names, section: str | None = None):
    section = _SECTION_NAMES.get(type(obj), "") if section is None else section
    for n in names:
        if not getattr(obj, n) > 0:
            raise ConfigError(f"{section}{n} must be positive, got {getattr(obj, n)}")


def _non_negative(obj, *names, section: str | None = None):
    section = _SECTION_NAMES.get(type(obj), "") if section is None else section
    for n in names:
        if not getattr(obj, n) >= 0:
            raise ConfigError(f"{section}{n} must be zero or positive, got {getattr(obj, n)}")


_SECTION_NAMES = {
    EnvConfig: "env.",
    AgentConfig: "agent.",
    PPOConfig: "ppo.",
    TrainConfig: "train.",
    TerminationConfig: "termination.",
}
