"""Perturbations applied: a model edited, wrenches scheduled, network parameters silenced.

What each kind changes is described in :mod:`mimic_mjx.analysis.perturb`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.analysis.perturb import (
    LOG_VAR_MIN,
    ActuatorGain,
    ForcePulse,
    Gravity,
    JointDamping,
    LatentNoise,
    Length,
    Mass,
    Perturbation,
    PerturbationError,
    SilenceLatent,
    SilenceLayer,
    _dofs,
    _ids,
    layer_widths,
    validate,
)

# --- body: model edits ---------------------------------------------------------------------------


def _actuator_lengths(model) -> np.ndarray:
    data = mujoco.MjData(model)  # at qpos0
    mujoco.mj_fwdPosition(model, data)
    return data.actuator_length.copy()


def _scale_segment(m, body: int, s: float) -> None:
    m.body_pos[m.body_parentid == body] *= s
    m.body_ipos[body] *= s
    geoms = np.flatnonzero(m.geom_bodyid == body)
    m.geom_pos[geoms] *= s
    for g in geoms:
        kind, (r, h) = m.geom_type[g], m.geom_size[g, :2]
        if kind in (int(mujoco.mjtGeom.mjGEOM_CAPSULE), int(mujoco.mjtGeom.mjGEOM_CYLINDER)):
            m.geom_size[g, 1] = h = h * s
            capsule = kind == int(mujoco.mjtGeom.mjGEOM_CAPSULE)
            # Collision broad phase uses these bounds, so they must cover the longer geom.
            m.geom_rbound[g] = r + h if capsule else math.hypot(r, h)
            m.geom_aabb[g] = (0, 0, 0, r, r, h + r if capsule else h)
    m.site_pos[m.site_bodyid == body] *= s


def _edit(m: mujoco.MjModel, p: Perturbation) -> None:
    if isinstance(p, Mass):
        ids = _ids(m, p)
        m.body_mass[ids] *= p.scale
        m.body_inertia[ids] *= p.scale
    elif isinstance(p, Length):
        before = _actuator_lengths(m)
        for body in _ids(m, p):
            if body != 0:
                _scale_segment(m, int(body), p.scale)
        muscles = m.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE)
        if p.lengthrange == "rescale" and np.any(muscles):
            ratio = np.where(before != 0, _actuator_lengths(m) / np.where(before != 0, before, 1.0), 1.0)
            m.actuator_lengthrange[muscles] *= ratio[muscles, None]
    elif isinstance(p, Gravity):
        m.opt.gravity[:] = p.vector if p.vector is not None else m.opt.gravity * p.scale
    elif isinstance(p, ActuatorGain):
        for a in _ids(m, p):
            if m.actuator_gaintype[a] == int(mujoco.mjtGain.mjGAIN_MUSCLE):
                force = m.actuator_gainprm[a, 2]
                if force < 0:  # automatic: MuJoCo uses scale / acc0 at run time
                    force = m.actuator_gainprm[a, 3] / max(mujoco.mjMINVAL, m.actuator_acc0[a])
                m.actuator_gainprm[a, 2] = m.actuator_biasprm[a, 2] = force * p.scale
            else:
                m.actuator_gainprm[a, :3] *= p.scale
                m.actuator_biasprm[a, :3] *= p.scale
            m.actuator_forcerange[a] *= p.scale
    elif isinstance(p, JointDamping):
        m.dof_damping[_dofs(m, _ids(m, p))] += p.add


def apply_to_model(model: mujoco.MjModel, perturbations: Sequence[Perturbation]) -> mujoco.MjModel:
    """A perturbed copy of ``model`` (the input is never changed); other kinds are ignored."""
    validate(perturbations, model)
    out = copy.deepcopy(model)
    edits = [p for p in perturbations if isinstance(p, Mass | Length | Gravity | ActuatorGain | JointDamping)]
    for p in edits:
        _edit(out, p)
    if edits:
        mujoco.mj_setConst(out, mujoco.MjData(out))
    return out


def force_pulse_xfrc(model: mujoco.MjModel, spec: ForcePulse, times_s) -> np.ndarray:
    """xfrc_applied (T, nbody, 6) at the step times: the world-frame force in columns 0:3 while active."""
    validate([spec], model)
    t = np.asarray(times_s, dtype=float)
    out = np.zeros((t.size, model.nbody, 6))
    # Step times like k * dt carry rounding error: a boundary within 1 ns counts as reached, so that a
    # 50 ms pulse at a 1 ms step covers exactly 50 steps.
    tol = 1e-9
    active = (t >= spec.start_s - tol) & (t < spec.start_s + spec.duration_s - tol)
    direction = np.asarray(spec.direction, dtype=float)
    out[active, int(_ids(model, spec)[0]), :3] = spec.newtons * direction / np.linalg.norm(direction)
    return out


def xfrc_schedule(model: mujoco.MjModel, perturbations: Sequence[Perturbation], times_s) -> np.ndarray:
    """Sum of all force pulses' xfrc_applied (T, nbody, 6); zeros without any."""
    out = np.zeros((np.size(times_s), model.nbody, 6))
    for p in perturbations:
        if isinstance(p, ForcePulse):
            out += force_pulse_xfrc(model, p, times_s)
    return out


# --- network -------------------------------------------------------------------------------------


def silenced_units(p: SilenceLayer, width: int) -> np.ndarray:
    """The units a silence_layer entry silences: its list, or a seeded random fraction (at least one)."""
    if p.units is not None:
        return np.unique(np.asarray(p.units, dtype=int))
    count = max(1, round(p.fraction * width))
    return np.sort(np.random.default_rng(p.seed).choice(width, size=count, replace=False))


def silenced_latent_units(perturbations: Sequence[Perturbation]) -> tuple[int, ...]:
    return tuple(sorted({u for p in perturbations if isinstance(p, SilenceLatent) for u in p.units}))


def _copy_tree(tree):
    return {k: _copy_tree(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _set_columns(dense: dict, cols, bias: float = 0.0) -> None:
    dense["kernel"] = jnp.asarray(dense["kernel"]).at[..., cols].set(0.0)
    dense["bias"] = jnp.asarray(dense["bias"]).at[..., cols].set(bias)


def apply_to_params(params: Mapping, perturbations: Sequence[Perturbation], latent_dim: int) -> dict:
    """New flax params with the silencing entries applied (the input is not changed)."""
    widths = layer_widths(params)
    validate(perturbations, layer_widths=widths, latent_dim=latent_dim)
    out = _copy_tree(params)
    for p in perturbations:
        if isinstance(p, SilenceLayer):
            net, index = p.layer.rsplit("_", 1)
            _set_columns(out[net][f"dense_{index}"], silenced_units(p, widths[p.layer]))
    units = np.asarray(silenced_latent_units(perturbations), dtype=int)
    if units.size:
        head = out["encoder"]["out"]
        if head["kernel"].shape[-1] != 2 * latent_dim:
            width = head["kernel"].shape[-1]
            raise PerturbationError(
                f"latent_dim {latent_dim} does not match the encoder's {width} outputs (2 x latent)"
            )
        _set_columns(head, units)
        _set_columns(head, units + latent_dim, bias=LOG_VAR_MIN)
    return out


def latent_noise_std(perturbations: Sequence[Perturbation]) -> float:
    """Standard deviation of the summed latent noise (independent entries add in quadrature)."""
    return math.sqrt(sum(p.std**2 for p in perturbations if isinstance(p, LatentNoise)))


def is_noop(perturbations: Sequence[Perturbation]) -> bool:
    """True when no entry changes anything (an empty list included)."""
    return all(_is_noop(p) for p in perturbations)


def _is_noop(p: Perturbation) -> bool:
    if isinstance(p, Mass | Length | ActuatorGain | Gravity):
        return p.scale == 1.0
    if isinstance(p, ForcePulse):
        return p.newtons == 0.0 or p.duration_s == 0.0
    return isinstance(p, JointDamping) and p.add == 0.0 or isinstance(p, LatentNoise) and p.std == 0.0
