"""Tasks of free bodies on the ground, and ``go_to_target``.

A free body starts every episode standing: its rest pose (``qpos0``) put
down on the floor (the lowest collision geom touching it), then settled for
``task.settle_s`` with its position servos holding the rest angles (muscles
inactive), once, on the host. Its size is its length: the settled pose's
horizontal extent at the rest pose (body origins, tail included). The body has fallen (the
episode terminates) when its root is lower than ``task.fall_height`` of its
standing height above the ground, or tilted more than ``task.fall_tilt_deg``
from its standing orientation.

The task observation is expressed in the heading frame (the root's yaw), as
the imitation task's is, so turning the whole scene about the vertical leaves
it unchanged.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.environments.task_env import Goal, Start, TaskEnv, TaskError
from mimic_mjx.quaternions import heading_matrix, quat_to_mat

_PLANE = int(mujoco.mjtGeom.mjGEOM_PLANE)


def floor_geoms(model: mujoco.MjModel) -> list[int]:
    """Planes of the world body: what a free body stands on."""
    return [g for g in range(model.ngeom) if model.geom_type[g] == _PLANE and model.geom_bodyid[g] == 0]


def holding_controls(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """Controls under which position servos exert no force at the present pose (others 0: muscles relaxed)."""
    gain, bias = model.actuator_gainprm[:, 0], model.actuator_biasprm
    servo = (model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_FIXED)) & (
        model.actuator_biastype == int(mujoco.mjtBias.mjBIAS_AFFINE)
    )
    safe = np.where(gain != 0, gain, 1.0)
    # force = gain * ctrl + b0 + b1 * length: zero at ctrl = -(b0 + b1 * length) / gain.
    hold = np.where(servo & (gain != 0), -(bias[:, 0] + bias[:, 1] * data.actuator_length) / safe, 0.0)
    return np.clip(hold, model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1])


def put_down(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """``qpos`` with the root moved vertically so the body's lowest colliding geom touches the floor."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    floors = floor_geoms(model)
    colliding = model.geom_contype | model.geom_conaffinity
    own = [g for g in range(model.ngeom) if model.geom_bodyid[g] != 0 and colliding[g]]
    reach = 10.0 * float(model.stat.extent)
    gaps = [mujoco.mj_geomDistance(model, data, f, g, reach, None) for f in floors for g in own]
    out = qpos.copy()
    if gaps:
        out[2] -= min(gaps)
    return out


def body_length(model: mujoco.MjModel, qpos: np.ndarray) -> float:
    """A free body's size: the horizontal extent of its body origins at ``qpos``."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    return float(np.max(np.ptp(data.xpos[1:, :2], axis=0)))


def standing_start(flat: mujoco.MjModel, model: mujoco.MjModel, settle_s: float, name: str):
    """(qpos, qvel, act) of the rest pose put down on ``flat``'s floor and settled in ``model``."""
    qpos = put_down(flat, flat.qpos0.copy())
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    ctrl = holding_controls(model, data)
    data.ctrl[:] = ctrl
    for a in range(model.nu):  # activation states start at their controls: already holding
        adr, num = model.actuator_actadr[a], model.actuator_actnum[a]
        if adr >= 0:
            data.act[adr : adr + num] = ctrl[a]
    up0, z0 = quat_to_mat(qpos[3:7])[2], qpos[2]
    for _ in range(int(round(settle_s / model.opt.timestep))):
        mujoco.mj_step(model, data)
    if not np.all(np.isfinite(data.qpos)):
        raise TaskError(f"body '{name}' blew up while settling on the floor in its rest pose")
    up = quat_to_mat(data.qpos[3:7])[2]
    if float(up @ up0) < np.cos(np.deg2rad(30)) or data.qpos[2] < 0.5 * z0:
        raise TaskError(
            f"body '{name}' does not stand in its rest pose: settled for {settle_s} s with its servos holding the "
            f"rest angles, its root sank from {1e3 * z0:.1f} to {1e3 * data.qpos[2]:.1f} mm or tilted over 30 degrees"
        )
    return data.qpos.copy(), data.qvel.copy(), data.act.copy()


class FreeBodyTask(TaskEnv):
    """A task of a free body on the ground: standing start, upright, falling."""

    def check_body(self, model) -> None:
        name = self.body.display_name
        if not self.has_root:
            raise TaskError(
                f"{self.name} needs a body with a free root joint that stands on a floor; body '{name}' has a "
                f"fixed base: try reach_target"
            )
        if not floor_geoms(model):
            raise TaskError(f"{self.name} needs a floor: body '{name}' has no plane (body files: 'floor: true')")

    def ground_height(self, xy):
        """Height of the ground under the horizontal point ``xy`` (2,)."""
        return jnp.asarray(self._floor_z, jnp.float32)

    def ground_height_host(self, xy) -> float:
        return float(self._floor_z)

    def setup(self, model) -> Start:
        flat = copy.deepcopy(self.body.compile_trainable())
        flat.opt.timestep = model.opt.timestep
        self._floor_z = max(float(flat.geom_pos[g, 2]) for g in floor_geoms(flat))
        qpos, qvel, act = standing_start(flat, model, self.task_cfg.settle_s, self.body.display_name)
        # Measured at the rest pose, not the settled one: the same for every task and model.
        length = body_length(flat, flat.qpos0)
        # Standing: world up in the root's frame, and the root's height above the ground.
        self._up = jnp.asarray(quat_to_mat(qpos[3:7]).T @ np.array([0.0, 0.0, 1.0]), jnp.float32)
        self.standing_height = float(qpos[2] - self.ground_height_host(qpos[:2]))
        self.start_xy = np.asarray(qpos[:2], np.float64)
        return Start(qpos, qvel, act, length, self.goal_length(length))

    def goal_length(self, length: float) -> float:
        return length

    def upright(self, phys):
        rot = quat_to_mat(phys.qpos[3:7])
        return (rot.T @ jnp.array([0.0, 0.0, 1.0])) @ self._up

    def height(self, phys):
        """The root's height above the ground under it."""
        return phys.qpos[2] - self.ground_height(phys.qpos[:2])

    def fallen(self, phys):
        t = self.task_cfg
        low = self.height(phys) < t.fall_height * self.standing_height
        return low | (self.upright(phys) < np.cos(np.deg2rad(t.fall_tilt_deg)))

    def local(self, phys, vec):
        """A world vector (3,) in the heading frame."""
        return heading_matrix(phys.qpos[3:7]).T @ vec


class GoToTarget(FreeBodyTask):
    """Walk to a target on the floor and stay within the success radius of it."""

    name = "go_to_target"
    reward_names = ("progress", "hold", "upright", "ctrl", "energy")
    default_episode_s = 5.0
    default_success_radius = 0.5  # of the body's length

    def setup(self, model) -> Start:
        start = super().setup(model)
        t = self.task_cfg
        self._fixed = None
        if t.target_m:
            xy = self.start_xy + np.asarray(t.target_m[:2], float)
            self._fixed = jnp.asarray([xy[0], xy[1], self._floor_z], jnp.float32)
        self._dist = (t.target_min_lengths * start.size, t.target_max_lengths * start.size)
        return start

    def sample_target(self, key) -> jax.Array:
        if self._fixed is not None:
            return self._fixed
        k_angle, k_dist = jax.random.split(key)
        angle = jax.random.uniform(k_angle, (), minval=0.0, maxval=2 * jnp.pi)
        dist = jax.random.uniform(k_dist, (), minval=self._dist[0], maxval=self._dist[1])
        xy = jnp.asarray(self.start_xy, jnp.float32) + dist * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
        return jnp.concatenate([xy, jnp.full((1,), self._floor_z, jnp.float32)])

    def goal(self, phys, target) -> Goal:
        d = jnp.linalg.norm(target[:2] - phys.qpos[:2])
        return Goal(d, d <= self.success_radius_m, {"task/upright": self.upright(phys)})

    def task_observation(self, phys, target) -> jax.Array:
        # Where the target lies from the body's point of view, in body lengths.
        rel = target.at[2].set(0.0) - phys.qpos[:3].at[2].set(0.0)
        local = self.local(phys, rel)[:2] / self.size
        return jnp.concatenate([local, jnp.linalg.norm(local, keepdims=True)])
