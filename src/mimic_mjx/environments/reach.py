"""``reach_target``: a fixed-base arm brings its end effector to a target and holds it there.

Targets are drawn in the arm's workspace: hinge angles uniform within the
joint ranges, then the end effector's position at those angles (forward
kinematics in JAX, MJX's ``kinematics`` on the arm's kinematic skeleton), so
every target is reachable by the skeleton. Every episode starts at the body's
rest pose (``qpos0``, clipped into the joint ranges), at rest, muscles
inactive. The arm's size is its reach: the farthest its end effector gets
from the first joint's anchor (the shoulder) over a fixed draw of poses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.environments.native import kinematic_skeleton
from mimic_mjx.environments.task_env import Goal, Start, TaskEnv, TaskError

#: Poses drawn (seed 0) to measure the arm's reach and check explicit targets.
WORKSPACE_SAMPLES = 20_000


def joint_ranges(model: mujoco.MjModel, layout) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of every non-root joint; an unlimited hinge turns all the way round."""
    lo, hi = layout.lo.copy(), layout.hi.copy()
    unlimited = ~np.isfinite(lo) | ~np.isfinite(hi)
    joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in layout.joint_names]
    slides = unlimited & (model.jnt_type[joints] == int(mujoco.mjtJoint.mjJNT_SLIDE))
    if slides.any():
        names = [n for n, s in zip(layout.joint_names, slides, strict=True) if s]
        raise TaskError(f"reach_target draws targets within the joint ranges, but slide joints {names} have none")
    lo[unlimited], hi[unlimited] = -np.pi, np.pi
    return lo, hi


def workspace(model: mujoco.MjModel, hinge_q, lo, hi, ee: int, n: int, seed: int = 0) -> np.ndarray:
    """End-effector positions (n, 3) at ``n`` poses drawn uniformly within the joint ranges (host)."""
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    out = np.empty((n, 3))
    for i, q in enumerate(rng.uniform(lo, hi, (n, len(lo)))):
        data.qpos[:] = model.qpos0
        data.qpos[hinge_q] = q
        mujoco.mj_kinematics(model, data)
        out[i] = data.xpos[ee]
    return out


class ReachTarget(TaskEnv):
    """Reach a target with the end effector (the body's first) and hold it within the success radius."""

    name = "reach_target"
    reward_names = ("reach", "hold", "ctrl", "energy")
    default_episode_s = 1.0
    default_success_radius = 0.1  # of the arm's reach

    def check_body(self, model) -> None:
        if self.has_root:
            raise TaskError(
                f"reach_target needs a fixed-base body (an arm whose base stays put) with an end effector; "
                f"body '{self.body.display_name}' has a free root joint: try go_to_target or bowl_escape"
            )
        if not self.body.end_effectors:
            raise TaskError(f"reach_target needs an end effector; body '{self.body.display_name}' names none")

    def setup(self, model) -> Start:
        from mujoco import mjx

        self._ee = int(self.ee_ids[0])
        self._lo, self._hi = joint_ranges(model, self.layout)
        rest = model.qpos0.copy()
        rest[self.hinge_q] = np.clip(rest[self.hinge_q], self._lo, self._hi)
        data = mujoco.MjData(model)
        data.qpos[:] = rest
        mujoco.mj_kinematics(model, data)
        # The first joint's anchor stays put on a fixed base: the arm's own origin (a shoulder).
        self.base = np.asarray(data.xanchor[0], np.float64)
        points = workspace(model, self.hinge_q, self._lo, self._hi, self._ee, WORKSPACE_SAMPLES)
        dist = np.linalg.norm(points - self.base, axis=1)
        reach = float(dist.max())
        if not reach > 0:
            raise TaskError(f"the end effector of body '{self.body.display_name}' does not move: nothing to reach")
        self._points, self._reach_range = points, (float(dist.min()), reach)
        # Forward kinematics in JAX: MJX on the bodies and joints alone (no muscles or geoms to support).
        skeleton = kinematic_skeleton(model)
        self._mx = mjx.put_model(skeleton)
        self._d0 = mjx.make_data(self._mx)
        self._qpos0 = jnp.asarray(model.qpos0)
        self._base_j = jnp.asarray(self.base, jnp.float32)
        self._fixed = None
        nv, na = model.nv, model.na
        start = Start(rest, np.zeros(nv), np.zeros(na), reach, reach)
        if self.task_cfg.target_m:
            self._fixed = jnp.asarray(self._check_target(np.asarray(self.task_cfg.target_m, float), reach), jnp.float32)
        return start

    def _check_target(self, target: np.ndarray, reach: float) -> np.ndarray:
        name = self.body.display_name
        if target.shape != (3,):
            raise TaskError(f"reach_target: task.target_m must be a point (x, y, z) in metres, got {target.tolist()}")
        nearest = float(np.min(np.linalg.norm(self._points - target, axis=1)))
        radius = self.task_cfg.success_radius_m or (self.task_cfg.success_radius or self.default_success_radius) * reach
        if nearest > max(radius, 0.05 * reach):
            lo, hi = self._points.min(0), self._points.max(0)
            box = ", ".join(f"{a} {1e3 * lo[i]:.1f} to {1e3 * hi[i]:.1f} mm" for i, a in enumerate("xyz"))
            raise TaskError(
                f"task.target_m {[round(v, 5) for v in target.tolist()]} is outside the workspace of body "
                f"'{name}': the nearest reachable point is {1e3 * nearest:.1f} mm away. The end effector reaches "
                f"{1e3 * self._reach_range[0]:.1f} to {1e3 * self._reach_range[1]:.1f} mm from the base at "
                f"{[round(v, 5) for v in self.base.tolist()]} m, within {box}"
            )
        return target

    def fk(self, hinge_angles):
        """End-effector position (3,) at the hinge angles (nj,)."""
        from mujoco import mjx

        qpos = self._qpos0.at[self.hinge_q].set(hinge_angles)
        return mjx.kinematics(self._mx, self._d0.replace(qpos=qpos)).xpos[self._ee]

    def sample_target(self, key) -> jax.Array:
        if self._fixed is not None:
            return self._fixed
        angles = jax.random.uniform(key, (len(self._lo),), minval=self._lo, maxval=self._hi)
        return self.fk(angles).astype(jnp.float32)

    def goal(self, phys, target) -> Goal:
        d = jnp.linalg.norm(phys.xpos[self._ee] - target)
        return Goal(d, d <= self.success_radius_m, {})

    def task_observation(self, phys, target) -> jax.Array:
        # Relative to the end effector (where to move) and to the base (where the target lies in
        # the arm's space), in reaches: O(1) for any arm.
        ee = phys.xpos[self._ee]
        return jnp.concatenate([(target - ee) / self.size, (target - self._base_j) / self.size])
