"""Domain randomisation: per-episode draws of a body's physics (``randomize.*``), as pure functions.

A draw is a mapping of small per-environment arrays, dimensionless and
relative to the body's own values (``PARAMS``): a friction factor per geom, a
mass factor per body (its inertia scales with it), a centre-of-mass shift per
body and principal axis in units of the body's rms extent along that axis, a
damping and an armature factor per degree of freedom, a strength factor per
actuator. Elements a key cannot act on (massless bodies, geoms that never
collide, undamped joints) keep the identity, so records show only what acts.
``model_fields`` turns a draw into the MjModel fields it replaces; both
backends apply it per environment (``step(..., params=draw)``): MJX replaces
the fields of its ``mjx.Model``, the native backend writes them into
``mujoco.batch``'s per-simulation model fields.

How a task environment uses it (``ImitationEnv`` does exactly this)::

    rz = Randomizer(model, cfg.randomize)         # the model its backend steps
    # at each episode reset, inside jit/vmap:
    draw = rz.draw(key)                           # {} when nothing is randomised
    qpos = rz.start_pose(key2, qpos, hinge_qpos)  # initial-pose noise, if the task wants it
    draw = rz.record_start(draw, qpos[hinge_qpos] - ref_qpos[hinge_qpos])
    # keep ``draw`` in the task's state (an empty dict when off); at each step:
    data = backend.step(data, ctrl, act, substeps, params=physics_params(draw))
    metrics |= rz.summary(draw)                   # 'randomize/...' scalars, logged per update

``physics_params`` of an empty draw is None: the backend then runs exactly
as without randomisation (same inputs, same numbers, same speed).
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.config.randomize import RandomizeConfig
from mimic_mjx.errors import ConfigError

#: Config key -> draw key, in the order draws and records list them.
PARAMS = {
    "friction_scale": "friction",
    "mass_scale": "mass",
    "com_shift": "com",
    "damping_scale": "damping",
    "armature_scale": "armature",
    "strength_scale": "strength",
}
#: Draw keys whose fields MuJoCo's mj_setConst reads (derived constants follow them on the native backend).
SETCONST_PARAMS = ("mass", "com", "armature")
#: Nothing randomised (the config's defaults).
OFF = RandomizeConfig()
#: The draw's record of the initial-pose noise: rms hinge-angle offset from the reference, rad.
INIT_POSE = "init_pose_rms_rad"


def param_shapes(model: mujoco.MjModel) -> dict[str, tuple[int, ...]]:
    """Per-environment shape of each draw key."""
    return {
        "friction": (model.ngeom,),
        "mass": (model.nbody,),
        "com": (model.nbody, 3),
        "damping": (model.nv,),
        "armature": (model.nv,),
        "strength": (model.nu,),
    }


def physics_params(draw: dict) -> dict | None:
    """The physics part of a draw, for a backend's ``params``; None when there is none."""
    params = {k: draw[k] for k in PARAMS.values() if k in draw}
    return params or None


def _principal_axes(model: mujoco.MjModel) -> np.ndarray:
    """(nbody, 3, 3): each body's principal axes (columns, body frame) scaled by its rms mass extent along each, m.

    A body of mass m with principal moments I has <x_k^2> = (I_1 + I_2 + I_3 - 2 I_k) / (2 m) along axis k.
    """
    out = np.zeros((model.nbody, 3, 3))
    for b in range(model.nbody):
        m, inertia = model.body_mass[b], model.body_inertia[b]
        if m <= 0:
            continue
        rms = np.sqrt(np.maximum(inertia.sum() - 2 * inertia, 0.0) / (2 * m))
        rot = np.empty(9)
        mujoco.mju_quat2Mat(rot, model.body_iquat[b])
        out[b] = rot.reshape(3, 3) * rms[None, :]
    return out


def _actuator_masks(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gainprm, biasprm, gain mask, bias mask): the parameters a strength factor multiplies.

    A muscle's force is its peak force prm[2] times its length-velocity-activation
    curves (gain and passive bias alike); an affine actuator's is
    prm[0] + prm[1] * length + prm[2] * velocity (gain times control, plus bias):
    scaling those scales the force at every state. Automatic muscle peak forces
    (prm[2] < 0: scale / acc0 at run time) are resolved to their value first.
    """
    gain, bias = model.actuator_gainprm.copy(), model.actuator_biasprm.copy()
    gmask, bmask = np.zeros_like(gain), np.zeros_like(bias)
    muscle = int(mujoco.mjtGain.mjGAIN_MUSCLE)
    for a in range(model.nu):
        if model.actuator_gaintype[a] == int(mujoco.mjtGain.mjGAIN_USER) or model.actuator_biastype[a] == int(
            mujoco.mjtBias.mjBIAS_USER
        ):
            raise ConfigError(
                f"randomize.strength_scale cannot scale actuator '{model.actuator(a).name}': its force comes from a "
                "user callback; leave randomize.strength_scale at [1, 1]"
            )
        for prm, mask, is_muscle in (
            (gain, gmask, model.actuator_gaintype[a] == muscle),
            (bias, bmask, model.actuator_biastype[a] == int(mujoco.mjtBias.mjBIAS_MUSCLE)),
        ):
            if is_muscle:
                if prm[a, 2] < 0:
                    prm[a, 2] = prm[a, 3] / max(mujoco.mjMINVAL, model.actuator_acc0[a])
                mask[a, 2] = 1.0
            else:
                mask[a, :3] = 1.0
    return gain, bias, gmask, bmask


def nominal_fields(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """The body's own values that draws scale or shift (float64, host), for ``model_fields``."""
    subtree = np.zeros((model.nbody, model.nbody))  # [i, j] = 1: body j is in body i's subtree
    for b in range(model.nbody):
        a = b
        while True:
            subtree[a, b] = 1.0
            if a == 0:
                break
            a = model.body_parentid[a]
    out = {
        "geom_friction": model.geom_friction.copy(),
        "body_mass": model.body_mass.copy(),
        "body_inertia": model.body_inertia.copy(),
        "subtree": subtree,
        "body_ipos": model.body_ipos.copy(),
        "com_axes": _principal_axes(model),
        "dof_damping": model.dof_damping.copy(),
        "dof_armature": model.dof_armature.copy(),
        "actuator_forcerange": model.actuator_forcerange.copy(),
    }
    if model.nu:
        gain, bias, gmask, bmask = _actuator_masks(model)
        out.update(actuator_gainprm=gain, actuator_biasprm=bias, gain_mask=gmask, bias_mask=bmask)
    return out


def model_fields(nominal: dict, params: dict, xp=jnp) -> dict:
    """The MjModel fields a draw replaces: name -> value (leading axes of ``params`` broadcast).

    ``xp``: ``jax.numpy`` (MJX, one environment inside vmap) or ``numpy``
    (native, float64, the whole batch at once).
    """
    out = {}
    if "friction" in params:
        out["geom_friction"] = nominal["geom_friction"] * params["friction"][..., None]
    if "mass" in params:
        s = params["mass"]
        out["body_mass"] = nominal["body_mass"] * s
        out["body_inertia"] = nominal["body_inertia"] * s[..., None]
        # Derived from the masses; MuJoCo's com-based frames divide by it.
        out["body_subtreemass"] = out["body_mass"] @ nominal["subtree"].T
    if "com" in params:
        out["body_ipos"] = nominal["body_ipos"] + xp.einsum("bij,...bj->...bi", nominal["com_axes"], params["com"])
    if "damping" in params:
        out["dof_damping"] = nominal["dof_damping"] * params["damping"]
    if "armature" in params:
        out["dof_armature"] = nominal["dof_armature"] * params["armature"]
    if "strength" in params and "actuator_gainprm" in nominal:
        s = params["strength"][..., None]
        out["actuator_gainprm"] = nominal["actuator_gainprm"] * (1.0 + (s - 1.0) * nominal["gain_mask"])
        out["actuator_biasprm"] = nominal["actuator_biasprm"] * (1.0 + (s - 1.0) * nominal["bias_mask"])
        out["actuator_forcerange"] = nominal["actuator_forcerange"] * s
    return out


def apply_to_model(model: mujoco.MjModel, params: dict) -> mujoco.MjModel:
    """A copy of ``model`` with one environment's draw applied (host, float64) and its constants recomputed.

    What the native backend simulates for that draw: for analyses that rerun a
    randomised episode's states through MuJoCo (``analysis.rollout``).
    """
    out = copy.deepcopy(model)
    params = {k: np.asarray(v, np.float64) for k, v in (physics_params(params) or {}).items()}
    for name, value in model_fields(nominal_fields(model), params, np).items():
        getattr(out, name)[:] = value
    if "com" in params:
        out.body_simple[1:] = 0  # MuJoCo's diagonal-mass shortcut assumes the centre of mass at the joint
        out.dof_simplenum[:] = 0
    if any(k in params for k in SETCONST_PARAMS):
        mujoco.mj_setConst(out, mujoco.MjData(out))
    return out


class Randomizer:
    """Draws of ``cfg``'s ranges for one compiled model; pure functions of JAX arrays after construction."""

    def __init__(self, model: mujoco.MjModel, cfg: RandomizeConfig = OFF):
        cfg.validate()
        self.cfg = cfg
        self.keys = tuple(PARAMS[k] for k in cfg.physics_keys)  # draw keys, in PARAMS order
        self.enabled = cfg.enabled  # whether a draw holds anything (physics or the start-pose record)
        self.shapes = param_shapes(model)
        if "strength" in self.keys and model.nu:
            _actuator_masks(model)  # ConfigError now for actuators it cannot scale
        # Elements each key acts on; the others keep the identity.
        colliding = (model.geom_contype | model.geom_conaffinity) > 0
        massive = model.body_mass > 0
        self.masks = {
            "friction": colliding,
            "mass": massive,
            "com": np.repeat(massive[:, None], 3, axis=1),
            "damping": model.dof_damping > 0,
            "armature": model.dof_armature > 0,
            "strength": np.ones(model.nu, bool),
        }
        # Every drawn element is low + span * u for one uniform vector u: one random call per
        # draw (a draw is computed for every environment at every step, see ImitationEnv.step).
        lows, spans = [], []
        for cfg_key in cfg.physics_keys:
            name, (lo, hi) = PARAMS[cfg_key], getattr(cfg, cfg_key)
            mask = np.broadcast_to(self.masks[name], self.shapes[name]).ravel()
            lows.append(np.where(mask, lo, 0.0 if name == "com" else 1.0))
            spans.append(np.where(mask, hi - lo, 0.0))
        self._low = np.concatenate(lows).astype(np.float32) if lows else np.zeros(0, np.float32)
        self._span = np.concatenate(spans).astype(np.float32) if spans else np.zeros(0, np.float32)

    def draw(self, key) -> dict:
        """One environment's physics draw (``PARAMS`` keys that ``cfg`` randomises); {} when none."""
        if not self.keys:
            return {}
        v = self._low + self._span * jax.random.uniform(key, self._low.shape)
        out, start = {}, 0
        for name in self.keys:
            size = int(np.prod(self.shapes[name]))
            out[name] = v[start : start + size].reshape(self.shapes[name])
            start += size
        return out

    def start_pose(self, key, qpos, hinge_qpos):
        """``qpos`` with uniform noise of ``init_pose_noise_rad`` on the hinge angles ``hinge_qpos`` indexes."""
        a = self.cfg.init_pose_noise_rad
        if a <= 0:
            return qpos
        return qpos.at[hinge_qpos].add(jax.random.uniform(key, (len(hinge_qpos),), minval=-a, maxval=a))

    def record_start(self, draw: dict, offset) -> dict:
        """``draw`` with the start's rms hinge-angle offset from the reference (rad), when this key sets the noise."""
        if self.cfg.init_pose_noise_rad <= 0:
            return draw
        return {**draw, INIT_POSE: jnp.sqrt(jnp.mean(jnp.square(offset)))}

    def summary(self, draw: dict) -> dict:
        """'randomize/...' scalars of one draw: mean factors, rms shift (fraction), start offset (deg)."""
        out = {}
        for name, v in draw.items():
            if name == INIT_POSE:
                out["randomize/init_pose_rms_deg"] = jnp.rad2deg(v)
                continue
            mask = self.masks[name]
            w = jnp.asarray(mask if mask.any() else np.ones_like(mask), jnp.float32)
            if name == "com":
                out["randomize/com_shift_rms"] = jnp.sqrt(jnp.sum(w * jnp.square(v)) / jnp.sum(w))
            else:
                out[f"randomize/{name}_scale"] = jnp.sum(w * v) / jnp.sum(w)
        return out
