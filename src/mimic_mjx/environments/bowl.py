"""``bowl_escape``: climb out of a bowl-shaped heightfield.

The bowl is added to the body's own model (MjSpec): a heightfield ``bowl``
centred on the start with its bottom at the body's floor level, flat within
half a body length of the centre (the body starts standing there), then
rising as ``depth (1 - cos(pi u)) / 2`` (``u`` from 0 there to 1 at the rim,
radius ``R``), flat again beyond the rim out to ``1.5 R`` (the heightfield's
edge; past it the ground drops to the body's floor plane, lowered below the
bowl). ``R`` and ``depth`` are ``task.bowl_radius_lengths`` and
``task.bowl_depth_lengths`` body lengths; the defaults (3 and 0.4) make the
steepest slope about 14 degrees, near that of dm_control's rodent escape
bowl (about 15; its ridge is farther away, 3 m). Success: the root beyond the
rim (farther than ``R`` from the centre, horizontally) for ``task.hold_s``.

Physics: the native backend (MuJoCo's C engine) collides heightfields with
every geom type. MJX (JAX) has no heightfield-ellipsoid collision (MuJoCo
3.17), and the rat's hands are ellipsoids, so the rat's bowl runs on the
native backend only; MJX's own error says so when asked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.environments.locomotion import FreeBodyTask, body_length, floor_geoms
from mimic_mjx.environments.task_env import Goal, TaskError

#: Heightfield samples per side.
BOWL_ROWS = 201
#: The heightfield reaches this many rim radii from the centre (a flat ring beyond the rim).
BOWL_EXTENT = 1.5
#: The bowl's bottom is flat this many body lengths from the centre: the body starts standing there.
BOWL_FLOOR = 0.5
BOWL = "bowl"
#: Constraint solver iterations at least this many in the bowl's model. Bodies set up for flat floors
#: may solve contacts in a few iterations (the rat: 6); on the heightfield, where each paw touches
#: several of its prisms, 6 left the paws sinking through it under random controls, 10 to 50 did not.
BOWL_SOLVER_ITERATIONS = 30


def bowl_profile(r, radius: float, depth: float, floor: float, xp=jnp):
    """Height of the bowl's surface above its centre at horizontal distance ``r``."""
    u = xp.clip((r - floor) / (radius - floor), 0.0, 1.0)
    return depth * 0.5 * (1.0 - xp.cos(np.pi * u))


def bowl_slope(r, radius: float, depth: float, floor: float):
    """d height / d r of ``bowl_profile`` (0 on the flat floor and beyond the rim)."""
    u = (r - floor) / (radius - floor)
    inside = (u > 0) & (u < 1)
    return jnp.where(inside, depth * 0.5 * np.pi / (radius - floor) * jnp.sin(np.pi * jnp.clip(u, 0.0, 1.0)), 0.0)


def bowl_elevation(radius: float, depth: float, floor: float, rows: int = BOWL_ROWS) -> np.ndarray:
    """Heightfield samples (rows, rows) in [0, 1] (MuJoCo scales them by the field's height)."""
    half = BOWL_EXTENT * radius
    x = np.linspace(-half, half, rows)
    r = np.hypot(x[None, :], x[:, None])
    return bowl_profile(r, radius, depth, floor, np) / depth


def add_bowl(spec: mujoco.MjSpec, radius: float, depth: float, floor: float, floor_z: float) -> mujoco.MjSpec:
    """Add the bowl heightfield to ``spec``, centred at the origin with its bottom at ``floor_z``.

    It collides as the floor does (the floor's contact settings), and the
    floor planes move below the bowl's base so they only catch what leaves it.
    """
    floors = [g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_PLANE]
    base = depth  # thick: a paw sunk deep into the soft contact still meets the top face, not a side
    half = BOWL_EXTENT * radius
    spec.add_hfield(
        name=BOWL,
        size=[half, half, depth, base],
        nrow=BOWL_ROWS,
        ncol=BOWL_ROWS,
        userdata=bowl_elevation(radius, depth, floor).ravel().tolist(),
    )
    ref = floors[0]
    spec.worldbody.add_geom(
        name=BOWL,
        type=mujoco.mjtGeom.mjGEOM_HFIELD,
        hfieldname=BOWL,
        pos=[0.0, 0.0, floor_z],
        contype=ref.contype,
        conaffinity=ref.conaffinity,
        condim=ref.condim,
        friction=ref.friction,
        solref=ref.solref,
        solimp=ref.solimp,
        priority=ref.priority,
        rgba=[0.45, 0.4, 0.32, 1.0],
    )
    for f in floors:
        f.pos = [f.pos[0], f.pos[1], floor_z - base - 0.01 * depth]
    return spec


class BowlEscape(FreeBodyTask):
    """Climb out of a bowl: reward for distance from the centre (up to the rim) while upright."""

    name = "bowl_escape"
    reward_names = ("escape", "upright", "ctrl", "energy")
    default_episode_s = 10.0

    def build_model(self, model):
        # The bowl's size follows the body's length (the size every free-body task measures).
        self._floor_z = max(float(model.geom_pos[g, 2]) for g in floor_geoms(model))
        length = body_length(model, model.qpos0)
        t = self.task_cfg
        if t.bowl_radius_lengths <= 2 * BOWL_FLOOR:
            raise TaskError(
                f"task.bowl_radius_lengths must exceed {2 * BOWL_FLOOR} (the flat bottom is {BOWL_FLOOR} body "
                f"lengths across each way, and the wall needs room), got {t.bowl_radius_lengths}"
            )
        self.bowl_radius, self.bowl_depth = t.bowl_radius_lengths * length, t.bowl_depth_lengths * length
        self.bowl_floor = BOWL_FLOOR * length
        build = self.body.build_trainable_spec or self.body.build_spec
        spec = add_bowl(build(), self.bowl_radius, self.bowl_depth, self.bowl_floor, self._floor_z)
        bowl = spec.compile()
        same = (bowl.nq, bowl.nv, bowl.nu, bowl.na, bowl.nbody) == (model.nq, model.nv, model.nu, model.na, model.nbody)
        if not same or not np.array_equal(bowl.actuator_gainprm, model.actuator_gainprm):
            raise TaskError(f"body '{self.body.display_name}': its model rebuilt with a bowl differs from its own")
        bowl.opt.iterations = max(bowl.opt.iterations, BOWL_SOLVER_ITERATIONS)
        bowl.opt.ls_iterations = max(bowl.opt.ls_iterations, BOWL_SOLVER_ITERATIONS)
        return bowl

    def goal_length(self, length: float) -> float:
        return self.bowl_radius

    def ground_height(self, xy):
        r = jnp.linalg.norm(xy)
        return self._floor_z + bowl_profile(r, self.bowl_radius, self.bowl_depth, self.bowl_floor)

    def ground_height_host(self, xy) -> float:
        r = np.linalg.norm(xy)
        return self._floor_z + float(bowl_profile(r, self.bowl_radius, self.bowl_depth, self.bowl_floor, np))

    def sample_target(self, key) -> jax.Array:
        del key  # one goal: out of the bowl, whichever way
        return jnp.asarray([0.0, 0.0, self._floor_z], jnp.float32)

    def goal(self, phys, target) -> Goal:
        r = jnp.linalg.norm(phys.qpos[:2] - target[:2])
        metrics = {"task/centre_distance_mm": 1e3 * r, "task/upright": self.upright(phys)}
        return Goal(jnp.maximum(self.bowl_radius - r, 0.0), r > self.bowl_radius, metrics)

    def task_observation(self, phys, target) -> jax.Array:
        # The centre seen from the body (body lengths), how far out it is (rims), its height
        # above the ground (body lengths) and the ground's slope under it, in the heading frame.
        rel = target.at[2].set(0.0) - phys.qpos[:3].at[2].set(0.0)
        r = jnp.linalg.norm(rel[:2])
        outward = -rel / jnp.maximum(r, 1e-6)
        slope = self.local(phys, outward * bowl_slope(r, self.bowl_radius, self.bowl_depth, self.bowl_floor))[:2]
        parts = [
            self.local(phys, rel)[:2] / self.size,
            (r / self.bowl_radius)[None],
            (self.height(phys) / self.size)[None],
            slope,
        ]
        return jnp.concatenate(parts)
