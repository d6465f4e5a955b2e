"""The native backend's batched C stepping against a plain ``mj_step`` loop.

The backend steps the whole batch in ``mujoco.batch``; these tests pin it to
the contract a per-environment loop over one MjData defines: the same numbers
for any thread count and any run, body poses at the final joint angles,
actuator forces of the last step's forward pass, the solver warm start carried
through the state, and a blow-up reported as NaN joint positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.data.binding import reference_poses
from mimic_mjx.environments.native import NativeBackend, NativeState, kinematic_skeleton

ARM = get_body("mouse_forelimb")
SUBSTEPS = 5


@pytest.fixture(scope="module")
def arm():
    return ARM.compile_trainable()


def _starts(model, n: int, seed: int = 0):
    """``n`` float32 forelimb states near the rest pose, activations and controls."""
    rng = np.random.default_rng(seed)
    lo, hi = model.jnt_range[:, 0], model.jnt_range[:, 1]
    qpos = rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo), (n, model.nq))
    qvel = rng.normal(0.0, 1.0, (n, model.nv))
    act = rng.uniform(0.0, 0.5, (n, model.na))
    ctrl = rng.uniform(0.0, 1.0, (n, 3, model.nu))  # three control steps
    return tuple(jnp.asarray(x, jnp.float32) for x in (qpos, qvel, act, ctrl))


def _reference(model, qpos, qvel, act, ctrls):
    """The contract, by hand: one MjData per environment, float32 between control steps."""
    d = mujoco.MjData(model)
    out = []
    for b in range(qpos.shape[0]):
        d.qpos[:], d.qvel[:], d.act[:], d.qacc_warmstart[:] = qpos[b], qvel[b], act[b], 0.0
        steps = []
        for c in ctrls[b]:
            d.time, d.ctrl[:] = 0.0, c
            for _ in range(SUBSTEPS):
                mujoco.mj_step(model, d)
            mujoco.mj_kinematics(model, d)
            fields = [np.asarray(getattr(d, k), np.float32) for k in NativeState.__dataclass_fields__]
            steps.append(fields)
            # The backend's state round-trips through float32 JAX arrays.
            d.qpos[:], d.qvel[:], d.act[:], d.qacc_warmstart[:] = fields[:4]
        out.append(steps)
    return out


def _rollout(backend, qpos, qvel, act, ctrls):
    def body(s, c):
        s = jax.vmap(lambda d, u: backend.step(d, u, d.act, SUBSTEPS))(s, c)
        return s, s

    start = jax.vmap(backend.init)(qpos, qvel).replace(act=act)
    _, traj = jax.jit(lambda s, c: jax.lax.scan(body, s, c))(start, jnp.swapaxes(ctrls, 0, 1))
    return jax.device_get(traj)  # (steps, envs, ...)


def test_batched_stepping_is_the_per_environment_mj_step_loop(arm):
    qpos, qvel, act, ctrls = _starts(arm, 6)
    traj = _rollout(NativeBackend(arm, 2), qpos, qvel, act, ctrls)
    ref = _reference(arm, np.asarray(qpos), np.asarray(qvel), np.asarray(act), np.asarray(ctrls))
    names = list(NativeState.__dataclass_fields__)
    for b in range(qpos.shape[0]):
        for t in range(ctrls.shape[1]):
            for k, want in zip(names, ref[b][t], strict=True):
                np.testing.assert_array_equal(getattr(traj, k)[t, b], want, err_msg=f"{k}, env {b}, step {t}")
    # The warm start is carried: it is the last step's accelerations, not zero.
    assert np.abs(traj.qacc_warmstart).max() > 1.0


def test_one_and_two_threads_and_two_runs_agree_bit_for_bit(arm):
    qpos, qvel, act, ctrls = _starts(arm, 7, seed=1)  # an odd batch: threads get unequal shares
    runs = [_rollout(NativeBackend(arm, t), qpos, qvel, act, ctrls) for t in (1, 2, 2)]
    for other in runs[1:]:
        for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_blown_up_environment_comes_back_as_nan_and_leaves_the_others_alone(arm):
    qpos, qvel, act, ctrls = _starts(arm, 4, seed=2)
    backend = NativeBackend(arm, 2)
    start = jax.vmap(backend.init)(qpos, qvel).replace(act=act)
    step = jax.jit(jax.vmap(lambda d, u: backend.step(d, u, d.act, SUBSTEPS)))
    clean = jax.device_get(step(start, ctrls[:, 0]))
    bad = jax.device_get(step(start.replace(qvel=start.qvel.at[1, 0].set(jnp.inf)), ctrls[:, 0]))
    assert np.all(np.isnan(bad.qpos[1])) and np.all(np.isfinite(bad.qvel[1]))
    for k in NativeState.__dataclass_fields__:
        np.testing.assert_array_equal(np.delete(getattr(bad, k), 1, 0), np.delete(getattr(clean, k), 1, 0))
    # The next call starts clean: nothing of the blow-up is left in the batch.
    again = jax.device_get(step(start, ctrls[:, 0]))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(clean), strict=True):
        np.testing.assert_array_equal(a, b)


def test_init_places_the_bodies_and_zeroes_the_rest(arm):
    qpos, qvel, _, _ = _starts(arm, 3, seed=3)
    backend = NativeBackend(arm, 2)
    s = jax.device_get(jax.vmap(backend.init)(qpos, qvel))
    one = jax.device_get(backend.init(qpos[2], qvel[2]))  # another batch size: its own batch
    d = mujoco.MjData(arm)
    d.qpos[:] = qpos[2]
    mujoco.mj_kinematics(arm, d)
    for got in (s.xpos[2], one.xpos):
        np.testing.assert_array_equal(got, d.xpos.astype(np.float32))
    np.testing.assert_array_equal(one.xquat, d.xquat.astype(np.float32))
    for k in ("act", "qacc_warmstart", "actuator_force", "actuator_velocity"):
        assert not np.any(getattr(s, k)) and not np.any(getattr(one, k)), k


@pytest.mark.parametrize("body", ["mouse_forelimb", "rat"])
def test_init_posed_is_init_without_the_host_call(body):
    model = get_body(body).compile_trainable()
    rng = np.random.default_rng(6)
    qpos = model.qpos0 + rng.uniform(-1.0, 1.0, (5, model.nq))
    if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
    qpos = jnp.asarray(qpos, jnp.float32)
    qvel = jnp.asarray(rng.normal(0.0, 1.0, (5, model.nv)), jnp.float32)
    xpos, xquat = reference_poses(model, np.asarray(qpos))
    backend = NativeBackend(model, 2)
    posed = jax.jit(jax.vmap(backend.init_posed))
    assert "callback" not in str(jax.make_jaxpr(posed)(qpos, qvel, xpos, xquat))
    want = jax.device_get(jax.vmap(backend.init)(qpos, qvel))
    got = jax.device_get(posed(qpos, qvel, xpos, xquat))
    for k in NativeState.__dataclass_fields__:
        a, b = getattr(got, k), getattr(want, k)
        assert a.dtype == b.dtype and a.shape == b.shape, k
        np.testing.assert_array_equal(a, b, err_msg=k)


@pytest.mark.parametrize("body", ["mouse_forelimb", "rat"])
def test_the_kinematic_skeleton_poses_bodies_as_the_model_does(body):
    model = get_body(body).compile_trainable()
    skeleton = kinematic_skeleton(model)
    assert skeleton is not model and skeleton.ngeom == 0 and skeleton.ntendon == 0 and skeleton.nu == 0
    d, k = mujoco.MjData(model), mujoco.MjData(skeleton)
    rng = np.random.default_rng(5)
    for _ in range(20):
        qpos = model.qpos0 + rng.uniform(-2.0, 2.0, model.nq)
        if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
            qpos[3:7] /= np.linalg.norm(qpos[3:7])
        d.qpos[:] = k.qpos[:] = qpos
        mujoco.mj_kinematics(model, d)
        mujoco.mj_kinematics(skeleton, k)
        np.testing.assert_array_equal(k.xpos, d.xpos)
        np.testing.assert_array_equal(k.xquat, d.xquat)


def test_a_model_with_mocap_bodies_is_posed_on_itself():
    spec = mujoco.MjSpec()
    spec.worldbody.add_body(mocap=True).add_geom(size=[0.1, 0, 0])
    arm = spec.worldbody.add_body()
    arm.add_joint(type=mujoco.mjtJoint.mjJNT_HINGE)
    arm.add_geom(size=[0.1, 0, 0])
    model = spec.compile()
    assert kinematic_skeleton(model) is model
