"""What a muscle-driven body can do at a pose: the joint torques its muscles reach.

A controller can only follow a reference whose joint torques (from inverse
dynamics) the muscles can produce. At one pose and velocity every muscle,
fully excited, adds one torque vector; with activations in [0, 1] the
reachable torques form a zonotope. Two questions answered here:

- ``weakest_torque``: the largest torque magnitude reachable in *every*
  direction (the radius of the biggest ball about zero inside the zonotope).
  Zero means some combination of joint torques cannot be produced at all, so a
  reference that needs it is lost whatever the controller learns.
- ``static_optimisation``: activations that best produce a needed torque, and
  the part of it left over.

The zonotope's in-radius is exact: its facets are spanned by nv - 1 muscle
vectors, and the distance to the nearest facet is the smallest support value
over those facets' normals.
"""

from __future__ import annotations

import itertools

import mujoco
import numpy as np
from scipy.optimize import lsq_linear


def muscle_torques(model: mujoco.MjModel, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """(nv, nu) joint torque of each actuator at full activation, and (nv,) with none.

    Uses ``data.qpos`` and ``data.qvel`` as set, so force-length and
    force-velocity effects of MuJoCo's muscle model are included; ``data.act``
    and ``data.ctrl`` are left at zero.
    """
    data.act[:] = 0.0
    data.ctrl[:] = 0.0
    mujoco.mj_forward(model, data)
    passive = data.qfrc_actuator.copy()
    out = np.empty((model.nv, model.nu))
    for a in range(model.nu):
        data.act[:] = 0.0
        data.ctrl[:] = 0.0
        if model.actuator_dyntype[a] == mujoco.mjtDyn.mjDYN_NONE:
            data.ctrl[a] = 1.0
        else:
            data.act[model.actuator_actadr[a]] = 1.0
        mujoco.mj_forward(model, data)
        out[:, a] = data.qfrc_actuator - passive
    data.act[:] = 0.0
    data.ctrl[:] = 0.0
    return out, passive


def weakest_torque(torques: np.ndarray) -> np.ndarray:
    """Largest torque magnitude reachable in every direction, per pose.

    torques: (..., nv, nu) actuator torques at full activation (activations in
    [0, 1]). Returns (...) in the torques' unit; 0 where some direction is out
    of reach.
    """
    t = np.asarray(torques, float)
    nv, nu = t.shape[-2:]
    lead = t.shape[:-2]
    t = t.reshape((-1, nv, nu))
    if nv == 1:
        return np.minimum(np.maximum(t, 0).sum(-1), np.maximum(-t, 0).sum(-1))[:, 0].reshape(lead)
    combos = np.array(list(itertools.combinations(range(nu), nv - 1)))
    if len(combos) == 0 or nu < nv:
        return np.zeros(lead)
    spans = np.transpose(t[:, :, combos], (0, 2, 3, 1))  # (n, facets, nv-1, nv)
    _, s, vt = np.linalg.svd(spans)
    normals = vt[..., -1, :]  # orthogonal to the facet's nv-1 muscle vectors
    proper = s[..., -1] > 1e-9 * np.maximum(s[..., 0], 1e-300)
    proj = np.einsum("nkj,nju->nku", normals, t)
    support = np.minimum(np.maximum(proj, 0).sum(-1), np.maximum(-proj, 0).sum(-1))
    # A body whose muscles do not span the joints reaches no ball at all.
    full_rank = np.linalg.matrix_rank(t) == nv
    weakest = np.where(proper, support, np.inf).min(-1)
    return np.where(full_rank & np.isfinite(weakest), weakest, 0.0).reshape(lead)


#: A frame whose muscles leave more than this share of the needed torque unproduced cannot be followed.
TORQUE_LEFT_TOL = 0.1


def actuated_fixed_base(model: mujoco.MjModel) -> bool:
    """Whether the body is muscle-driven with every degree of freedom a hinge or slide (no free root).

    A free root's forces come from contacts, not muscles, so torque feasibility
    is only judged for fixed-base bodies; and only for muscles, whose
    activations lie in [0, 1] (a motor's control range may be signed).
    """
    scalar = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    muscles = np.all(model.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE)
    return bool(model.nu > 0 and muscles and model.njnt == model.nv and all(int(t) in scalar for t in model.jnt_type))


def _frame_torques(model: mujoco.MjModel, qpos, qvel, qacc):
    """Per frame: inverse-dynamics torque (T, nv), muscle torques (T, nv, nu), passive torque (T, nv)."""
    data = mujoco.MjData(model)
    n = len(qpos)
    need = np.empty((n, model.nv))
    torques = np.empty((n, model.nv, model.nu))
    passive = np.empty((n, model.nv))
    for t in range(n):
        data.qpos[:], data.qvel[:], data.qacc[:] = qpos[t], qvel[t], qacc[t]
        data.act[:] = 0.0
        mujoco.mj_inverse(model, data)
        need[t] = data.qfrc_inverse
        torques[t], passive[t] = muscle_torques(model, data)
    return need, torques, passive


def _best_activations(need, torques, passive) -> tuple[np.ndarray, float]:
    """Activations in [0, 1] closest to producing ``need``, and the fraction of it left unproduced."""
    target = need - passive
    scale = max(np.abs(torques).max(), 1e-30)  # keeps the solver's tolerances meaningful at micro-newton-metres
    sol = lsq_linear(torques / scale, target / scale, bounds=(0.0, 1.0))
    return sol.x, float(np.linalg.norm(torques @ sol.x - target) / max(np.linalg.norm(need), 1e-30))


def static_optimisation(
    model: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray, qacc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: activations (T, nu) in [0, 1] that best produce the inverse-dynamics torque, and
    the fraction (T,) of that torque the muscles leave unproduced (0: feasible; 1: none of it).
    """
    need, torques, passive = _frame_torques(model, qpos, qvel, qacc)
    acts = np.zeros((len(qpos), model.nu))
    left = np.zeros(len(qpos))
    for t in range(len(qpos)):
        acts[t], left[t] = _best_activations(need[t], torques[t], passive[t])
    return acts, left


def unproducible_frames(
    model: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray, qacc: np.ndarray, tol: float = TORQUE_LEFT_TOL
) -> np.ndarray:
    """(T,) bool: frames whose inverse-dynamics torque the muscles cannot produce (more than ``tol`` left).

    A frame needing less than the torque reachable in every direction is
    feasible without solving; only the others go through static optimisation.
    """
    need, torques, passive = _frame_torques(model, qpos, qvel, qacc)
    easy = np.linalg.norm(need - passive, axis=1) <= weakest_torque(torques)
    out = np.zeros(len(qpos), bool)
    for t in np.nonzero(~easy)[0]:
        out[t] = _best_activations(need[t], torques[t], passive[t])[1] > tol
    return out
