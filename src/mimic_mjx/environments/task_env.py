"""Tasks without reference kinematics, as pure functions of JAX arrays (``environments.tasks``).

A task gives the controller a goal instead of a clip: a target to reach, a
place to walk to, a bowl to climb out of. Its state (``TaskState``) has every
field the trainer reads from an imitation state (clip and frame are zeros), so
the same PPO, logs and checkpoints train it, and its proprioception
(``prop_obs``) is exactly the imitation task's for the same body and physics
state (``environments.proprio``): a decoder trained by imitation reads it
unchanged while a new high-level policy reads the task's observation
(``ref_obs``). ``reset`` and ``step`` are jit- and vmap-able; ``step``
auto-resets like ``ImitationEnv.step``.

Success is the goal condition (``Goal.within``) held for ``task.hold_s``
without a break, at any time in the episode; an episode lasts
``task.episode_s`` and ends early only when a free body falls or the physics
blows up. Subclasses say what the goal is (``sample_target``, ``goal``,
``task_observation``), which reward terms count (``reward_names``), where an
episode starts (``setup``) and, for free bodies, what falling is.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mimic_mjx.bodies import BodyModel
from mimic_mjx.bodies.layout import JointLayout
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.data.binding import body_ids, reference_poses
from mimic_mjx.environments.actions import ActionMap
from mimic_mjx.environments.backends import default_backend, make_backend
from mimic_mjx.environments.envbase import AutoResetEnv
from mimic_mjx.environments.proprio import actuator_force_scale, proprioception
from mimic_mjx.environments.randomize import Randomizer, physics_params
from mimic_mjx.environments.task_rewards import TaskQuantities, task_reward_terms
from mimic_mjx.errors import MimicError


class TaskError(MimicError):
    """A task that cannot be set up for this body or config."""


@struct.dataclass
class TaskProgress:
    """How the episode has gone so far."""

    distance: jax.Array  # () m from the goal now
    held: jax.Array  # int32: consecutive control steps within the success region
    reached_step: jax.Array  # int32: first control step within it (-1: not yet)
    success: jax.Array  # float 0/1: the goal held for task.hold_s at some time this episode
    energy: jax.Array  # () J: summed absolute actuator power times the control step


@struct.dataclass
class TaskState:
    data: object  # the backend's physics state
    clip: jax.Array  # int32, always 0 (no clips; the trainer's termination memory reads it)
    frame: jax.Array  # int32, always 0
    steps: jax.Array  # int32, control steps since the episode started
    prev_ctrl: jax.Array
    ref_obs: jax.Array  # the task's observation (what the high-level policy reads)
    prop_obs: jax.Array  # proprioception, as the imitation task gives it
    reward: jax.Array
    terminated: jax.Array  # float 0/1: fallen or physics non-finite
    truncated: jax.Array  # float 0/1: the episode's time ran out
    metrics: dict
    key: jax.Array
    target: jax.Array  # (3,) world point of the goal
    progress: TaskProgress
    randomize: dict  # the episode's domain-randomisation draw (environments.randomize); {} when off


class Goal(NamedTuple):
    """Where the body stands with respect to its goal after a step."""

    distance: jax.Array  # () m still to go
    within: jax.Array  # () bool: inside the success region
    metrics: dict  # the task's own per-step metrics (task/...)


class Start(NamedTuple):
    """Where every episode starts (host arrays) and the lengths the task scales with."""

    qpos: np.ndarray
    qvel: np.ndarray
    act: np.ndarray
    size: float  # m: the body's size (reach of an arm, length of a free body)
    goal_scale: float  # m: the goal's own length (bowl rim radius; else the size)


def advance_progress(p: TaskProgress, goal: Goal, steps, power, hold_steps: int, dt: float) -> TaskProgress:
    """The episode's progress after a control step that ended at ``goal``."""
    held = jnp.where(goal.within, p.held + 1, 0)
    return TaskProgress(
        distance=goal.distance,
        held=held,
        reached_step=jnp.where((p.reached_step < 0) & goal.within, steps, p.reached_step),
        success=jnp.maximum(p.success, (held >= hold_steps).astype(jnp.float32)),
        energy=p.energy + jnp.sum(jnp.abs(power)) * dt,
    )


def task_metrics(terms: dict, reward, goal: Goal, p: TaskProgress, steps, terminated, unstable, ctrl, power, dt):
    """The metrics record of one transition (scalars); ``episode/*`` describe the episode it ended."""
    reached = (p.reached_step >= 0).astype(jnp.float32)
    # Time of the first reach; until then the time so far (a lower bound).
    time_to_reach = jnp.where(reached > 0, p.reached_step, steps).astype(jnp.float32) * dt
    m = {f"reward/{k}": v for k, v in terms.items()}
    m["reward/total"] = reward
    m.update(
        {
            "task/distance_mm": 1e3 * p.distance,
            "task/success": p.success,
            "task/reached": reached,
            "task/time_to_reach_s": time_to_reach,
            **goal.metrics,
            "effort/ctrl_sq": jnp.mean(jnp.square(ctrl)),
            "effort/power_mw": 1e3 * jnp.sum(jnp.abs(power)),
            "effort/energy_mj": 1e3 * p.energy,
            "episode/length": steps.astype(jnp.float32),
            "episode/terminated": terminated,
            "episode/unstable": unstable,
            "episode/success": p.success,
            "episode/reached": reached,
            "episode/time_to_reach_s": time_to_reach,
            "episode/distance_mm": 1e3 * p.distance,
            "episode/energy_mj": 1e3 * p.energy,
        }
    )
    return m


#: Metrics kept as they are when the physics blew up (the rest report zeros).
_OUTCOME = ("episode/length", "episode/terminated", "episode/unstable")


class TaskEnv(AutoResetEnv, abc.ABC):
    """A task without reference kinematics for one body, on one physics backend.

    ``cfg``: the experiment config (``task``, ``env``); ``body``: the body;
    ``control_dt``: the control step, s (an imitation run's, whose decoder is
    reused: the decoder only knows that rate). Physics steps ``env.substeps``
    times per control step.
    """

    name = ""
    reward_names: tuple[str, ...] = ()
    default_episode_s = 1.0
    default_success_radius = 0.1  # fraction of the body's size

    def __init__(self, cfg: ExperimentConfig, body: BodyModel, control_dt: float):
        if not np.isfinite(control_dt) or not control_dt > 0:
            raise TaskError(f"the control step must be a positive number of seconds, got {control_dt}")
        self.experiment, self.task_cfg, self.body = cfg, cfg.task, body
        e = cfg.env
        if e.backend == "auto":  # as training/experiment.build_env: from the body itself
            e = dataclasses.replace(e, backend="mjx" if default_backend() == "mjx" else body.cpu_backend)
        self.cfg = e
        trainable = body.compile_trainable()
        self.layout = JointLayout.from_model(trainable)
        self.has_root = self.layout.free_root
        self.check_body(trainable)
        model = copy.deepcopy(self.build_model(trainable))
        self.control_dt = float(control_dt)
        model.opt.timestep = self.control_dt / e.substeps
        self.model = model
        self.hinge_q, self.hinge_v = self.layout.hinge_qpos, self.layout.hinge_dof
        self.body_ids = body_ids(model, body.tracked())
        self.ee_ids = body_ids(model, body.end_effectors)
        # Muscle forces over the body's own peak forces, exactly as the imitation task observes them.
        self.force_scale = jnp.asarray(actuator_force_scale(trainable))
        self.actions = ActionMap(model, e.action, e.action_range_rad, body=str(e.body))
        self.nu = self.action_size = model.nu
        start = self.setup(model)
        self.size, self.goal_scale = float(start.size), float(start.goal_scale)
        t = self.task_cfg
        self.success_radius_m = t.success_radius_m or (t.success_radius or self.default_success_radius) * self.size
        self.episode_steps = max(1, int(round((t.episode_s or self.default_episode_s) / self.control_dt)))
        self.episode_s = self.episode_steps * self.control_dt  # what an episode lasts, s
        self.hold_steps = max(1, int(round(t.hold_s / self.control_dt)))
        g = float(np.linalg.norm(model.opt.gravity)) or 9.81
        self.mass = float(model.body_subtreemass[0])
        self.power_scale = self.mass * g * float(np.sqrt(g * self.size))
        xpos, xquat = reference_poses(model, start.qpos[None])
        self._start = tuple(jnp.asarray(a, jnp.float32) for a in (start.qpos, start.qvel, start.act, xpos[0], xquat[0]))
        self.backend = make_backend(e.backend, model, str(e.body), e.native_threads)
        self.randomizer = Randomizer(model, cfg.randomize)

    # -- what a task defines --------------------------------------------------
    @abc.abstractmethod
    def check_body(self, model) -> None:
        """TaskError unless the body fits the task."""

    def build_model(self, model):
        """The simulated model: the body's trainable model, plus whatever the task adds."""
        return model

    @abc.abstractmethod
    def setup(self, model) -> Start:
        """Where episodes start and the lengths the task scales with (host, once; ``model`` is simulated)."""

    @abc.abstractmethod
    def sample_target(self, key) -> jax.Array:
        """A goal (3,) for a new episode (world point)."""

    @abc.abstractmethod
    def goal(self, phys, target) -> Goal:
        """Where a physics state stands with respect to the goal ``target``."""

    @abc.abstractmethod
    def task_observation(self, phys, target) -> jax.Array:
        """What the high-level policy reads of the task (``ref_obs``), O(1) numbers."""

    def upright(self, phys):
        """Cosine of the root's tilt from standing (1 for a fixed base)."""
        return jnp.ones(())

    def fallen(self, phys):
        return jnp.zeros((), bool)

    @property
    def failure_table_shape(self) -> tuple[int, int]:
        """No clips, so no termination memory to start episodes from (PPOTrainer's layout: one cell)."""
        return (1, 1)

    def view(self, state: TaskState):
        return self.backend.view(state.data)

    def action_to_ctrl(self, action, qpos=None):
        return self.actions(action, qpos)

    # -- pure functions ----------------------------------------------------------
    def observe(self, phys, target, prev_ctrl):
        """(task observation, proprioception) of a physics state."""
        prop = proprioception(
            phys, self.hinge_q, self.hinge_v, self.body_ids, self.has_root, self.force_scale, prev_ctrl
        )
        return self.task_observation(phys, target), prop

    def start_data(self, key):
        """The physics state an episode starts from (``randomize.init_pose_noise_rad`` on its hinges), with
        its muscle (actuator) state, and the episode's domain-randomisation draw."""
        qpos, qvel, act, xpos, xquat = self._start
        rz = self.randomizer
        draw = rz.draw(jax.random.fold_in(key, 1))
        if rz.cfg.init_pose_noise_rad > 0:  # posed by the backend: the stored poses are the noiseless start's
            noisy = rz.start_pose(jax.random.fold_in(key, 2), qpos, self.hinge_q)
            draw = rz.record_start(draw, (noisy - qpos)[self.hinge_q])
            return self.backend.init(noisy, qvel).replace(act=act), draw
        return self.backend.init_posed(qpos, qvel, xpos, xquat).replace(act=act), draw

    def physics_step(self, data, ctrl, act, draw):
        """The one call of the physics backend per control step, with the episode's randomised physics."""
        return self.backend.step(data, ctrl, act, self.cfg.substeps, params=physics_params(draw))

    def _rewards(self, phys, goal: Goal, ctrl, power, prev_distance):
        """The step's named reward terms and their sum."""
        q = TaskQuantities(
            distance=goal.distance,
            prev_distance=prev_distance,
            within=goal.within.astype(jnp.float32),
            upright=self.upright(phys),
            ctrl=ctrl,
            power=power,
            size=self.size,
            goal_scale=self.goal_scale,
            power_scale=self.power_scale,
            dt=self.control_dt,
        )
        terms = task_reward_terms(self.task_cfg.reward, self.reward_names, q)
        return terms, sum(terms.values())

    def reset_to(self, key, target) -> TaskState:
        """Start an episode with the goal at ``target`` (3,) (``held_out_targets`` gives evaluation ones)."""
        target = jnp.asarray(target, jnp.float32)
        data, draw = self.start_data(key)
        phys = self.backend.view(data)
        prev_ctrl = jnp.zeros(self.nu)
        ref_obs, prop_obs = self.observe(phys, target, prev_ctrl)
        goal = self.goal(phys, target)
        zero, none = jnp.zeros(()), jnp.int32(0)
        progress = TaskProgress(goal.distance, none, jnp.int32(-1), zero, zero)
        # The record's layout (zeros) is that of a step, so every state has the same pytree.
        power = jnp.zeros(self.nu)
        terms, reward = self._rewards(phys, goal, prev_ctrl, power, goal.distance)
        metrics = task_metrics(terms, reward, goal, progress, none, zero, zero, prev_ctrl, power, self.control_dt)
        metrics |= self.randomizer.summary(draw)
        return TaskState(
            data=data,
            clip=none,
            frame=none,
            steps=none,
            prev_ctrl=prev_ctrl,
            ref_obs=ref_obs,
            prop_obs=prop_obs,
            reward=zero,
            terminated=zero,
            truncated=zero,
            metrics=jax.tree.map(jnp.zeros_like, metrics),
            key=key,
            target=target,
            progress=progress,
            randomize=draw,
        )

    def reset(self, key, failure_cdf=None) -> TaskState:
        """Start an episode with a freshly drawn goal (``failure_cdf``: unused, there are no clips)."""
        del failure_cdf
        k_target, k_next = jax.random.split(key)
        return self.reset_to(k_next, self.sample_target(k_target))

    def step_no_reset(self, state: TaskState, action) -> TaskState:
        """Advance one control step; the state is not reset when the episode ends."""
        before = self.backend.view(state.data)
        ctrl = self.action_to_ctrl(action, before.qpos)
        data = self.physics_step(state.data, ctrl, before.act, state.randomize)
        phys = self.backend.view(data)
        finite = jnp.all(jnp.isfinite(phys.qpos)) & jnp.all(jnp.isfinite(phys.qvel))
        steps = state.steps + 1
        goal = self.goal(phys, state.target)
        power = phys.actuator_force * phys.actuator_velocity
        progress = advance_progress(state.progress, goal, steps, power, self.hold_steps, self.control_dt)
        terms, reward = self._rewards(phys, goal, ctrl, power, state.progress.distance)
        terminated = self.fallen(phys) | ~finite
        truncated = (steps >= self.episode_steps) & ~terminated
        ref_obs, prop_obs = self.observe(phys, state.target, ctrl)
        # A blown-up state must not poison training: report zeros, end the episode.
        sanitize = lambda x: jnp.where(finite, jnp.nan_to_num(x, posinf=0.0, neginf=0.0), 0.0)
        terminated, unstable = terminated.astype(jnp.float32), (~finite).astype(jnp.float32)
        metrics = task_metrics(terms, reward, goal, progress, steps, terminated, unstable, ctrl, power, self.control_dt)
        metrics = {k: v if k in _OUTCOME else sanitize(v) for k, v in metrics.items()}
        metrics |= self.randomizer.summary(state.randomize)  # the episode's draw, finite by construction
        return state.replace(
            data=data,
            steps=steps,
            prev_ctrl=ctrl,
            ref_obs=sanitize(ref_obs),
            prop_obs=sanitize(prop_obs),
            reward=sanitize(reward),
            terminated=terminated,
            truncated=truncated.astype(jnp.float32),
            metrics=metrics,
            progress=progress.replace(distance=sanitize(progress.distance), energy=sanitize(progress.energy)),
        )


#: Key stream of held-out task instances: folded into the seed, never a training key.
HELD_OUT_STREAM = 0x7A5C_0E1D


def held_out_targets(env: TaskEnv, n: int, seed: int = 0) -> jax.Array:
    """``n`` goals (n, 3) drawn as ``reset`` draws them, from a key stream training never uses.

    Start evaluation episodes at them with ``env.reset_to(key, target)``.
    """
    if n < 1:
        raise TaskError(f"the number of held-out targets must be at least 1, got {n}")
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(HELD_OUT_STREAM), seed), n)
    return jax.jit(jax.vmap(env.sample_target))(keys)
