"""How a policy's unbounded outputs become actuator controls (``env.action``).

* ``absolute`` (default): each output is squashed (tanh) onto its actuator's
  whole control range. A muscle's output is its excitation; a position servo's
  is its target angle anywhere in the joint's range.
* ``relative`` (position servos only): each output moves its servo's target
  by up to ``env.action_range_rad`` from the joint's *current* angle:
  ``ctrl = clip(q + range * tanh(a), ctrlrange)``. An output of zero holds the
  present posture, and the output that follows a reference is the step the
  reference takes next (ref_q - q, which the observation carries), so PPO
  finds it within minutes where learning absolute targets takes a rat half an
  hour (docs/bodies.md, docs/benchmarks.md). The controller still produces every
  command itself; only the frame of its commands changes (delta joint position
  control, as many legged robots use).
"""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.errors import ConfigError

ACTION_MODES = ("absolute", "relative")


class ActionMap:
    """The map from policy outputs to controls of one compiled model (indices baked as constants)."""

    def __init__(self, model: mujoco.MjModel, mode: str = "absolute", range_rad: float = 0.5, body: str = ""):
        if mode not in ACTION_MODES:
            raise ConfigError(f"env.action must be one of {', '.join(ACTION_MODES)}, got '{mode}'")
        self.mode, self.range = mode, float(range_rad)
        self.lo = jnp.asarray(model.actuator_ctrlrange[:, 0])
        self.hi = jnp.asarray(model.actuator_ctrlrange[:, 1])
        self.qpos_index = relative_qpos_index(model, body) if mode == "relative" else None

    def __call__(self, action, qpos=None):
        if self.mode == "relative":
            return jnp.clip(qpos[self.qpos_index] + self.range * jnp.tanh(action), self.lo, self.hi)
        return self.lo + 0.5 * (jnp.tanh(action) + 1.0) * (self.hi - self.lo)


def relative_qpos_index(model: mujoco.MjModel, body: str = "") -> np.ndarray:
    """qpos address of each actuator's joint; ConfigError unless every actuator is a position servo (hinge or slide)."""
    bad = []
    index = []
    for a in range(model.nu):
        joint = int(model.actuator_trnid[a, 0])
        on_joint = model.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT) and int(model.jnt_type[joint]) in (
            int(mujoco.mjtJoint.mjJNT_HINGE),
            int(mujoco.mjtJoint.mjJNT_SLIDE),
        )
        servo = (
            on_joint
            and model.actuator_gaintype[a] == int(mujoco.mjtGain.mjGAIN_FIXED)
            and model.actuator_biastype[a] == int(mujoco.mjtBias.mjBIAS_AFFINE)
            and model.actuator_gainprm[a, 0] >= 0  # 0: a silenced servo (mimic experiment)
            and model.actuator_biasprm[a, 1] == -model.actuator_gainprm[a, 0]
        )
        if not servo:
            bad.append(model.actuator(a).name)
        index.append(int(model.jnt_qposadr[joint]) if on_joint else -1)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ConfigError(
            f"env.action=relative moves position servos' targets from their joints' angles, but "
            f"{'body ' + body + ': ' if body else ''}actuators {shown} are not position servos on a hinge or "
            f"slide; use env.action=absolute"
        )
    return np.asarray(index, dtype=np.int32)
