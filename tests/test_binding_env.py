"""Binding clips to the body by name, and the imitation environment's behaviour."""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.config import EnvConfig, TerminationConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.errors import BindingError, ClipError

BODY = get_body("mouse_forelimb")


def _bind(clips, horizon=5):
    return bind_clips(clips, BODY.compile(), BODY.name, BODY.end_effectors, horizon + 1, horizon)


def test_binding_by_name_reorders_columns():
    clip = make_reaching_clips(1, seed=3)[0]
    order = [3, 1, 0, 2]
    shuffled = dataclasses.replace(
        clip, joint_names=tuple(clip.joint_names[i] for i in order), qpos=clip.qpos[:, order], qvel=clip.qvel[:, order]
    )
    a, b = _bind([clip]), _bind([shuffled])
    np.testing.assert_array_equal(a.qpos, b.qpos)
    np.testing.assert_array_equal(a.qvel, b.qvel)


def test_binding_errors():
    clip = make_reaching_clips(1, seed=3)[0]
    renamed = dataclasses.replace(clip, joint_names=("sh_elv", "sh_extension", "shoulder_rot", "elbow_joint"))
    with pytest.raises(BindingError, match=r"missing \['sh_rotation'\], unknown \['shoulder_rot'\]"):
        _bind([renamed])
    with pytest.raises(BindingError, match="made for body 'rat'"):
        _bind([dataclasses.replace(clip, body="rat")])
    with pytest.raises(BindingError, match="bodies \\['tail'\\]"):
        _bind([dataclasses.replace(clip, body_names=clip.body_names[:-1] + ("tail",))])
    short = dataclasses.replace(
        clip,
        qpos=clip.qpos[:4],
        qvel=clip.qvel[:4],
        xpos=clip.xpos[:4],
        xquat=clip.xquat[:4],
        keypoints=clip.keypoints[:4],
    )
    with pytest.raises(ClipError, match="has 4 frames, fewer than the 6 needed"):
        _bind([short])
    with pytest.raises(ClipError, match="different frame rates"):
        _bind([clip, dataclasses.replace(clip, name="b", fps=100.0)])


def test_end_effector_from_kinematics_when_clip_has_no_body_positions():
    clip = make_reaching_clips(1, seed=4)[0]
    bare = dataclasses.replace(clip, body_names=(), xpos=None, xquat=None)
    np.testing.assert_allclose(_bind([bare]).ee_pos, _bind([clip]).ee_pos, atol=1e-7)


def test_bank_holds_every_bodys_pose_at_every_frame():
    clips = make_reaching_clips(2, seed=6)
    model = BODY.compile()
    bank = _bind(clips)
    assert bank.xpos.shape == (len(bank.qpos), model.nbody, 3) and bank.xpos.dtype == np.float32
    assert bank.xquat.shape == (len(bank.qpos), model.nbody, 4) and bank.xquat.dtype == np.float32
    d = mujoco.MjData(model)
    for i, t in [(0, 0), (0, 17), (1, int(bank.lengths[1]) - 1), (1, int(bank.lengths[1]) + bank.pad - 1)]:
        r = bank.starts[i] + t  # the bank's row of clip i's frame t
        d.qpos[:] = bank.qpos[r]
        mujoco.mj_kinematics(model, d)
        np.testing.assert_array_equal(bank.xpos[r], d.xpos.astype(np.float32))
        np.testing.assert_array_equal(bank.xquat[r], d.xquat.astype(np.float32))


@pytest.fixture(scope="module")
def env():
    clips = make_reaching_clips(3, seed=5)
    return ImitationEnv(
        EnvConfig(),
        _bind(clips),
        BODY.compile(),
        BODY.end_effectors,
        termination=TerminationConfig(max_joint_error_rad=0.3),
    )


@pytest.fixture(scope="module")
def fns(env):
    return jax.jit(env.reset_to), jax.jit(env.step_no_reset), jax.jit(env.step)


def test_reset_places_body_in_reference_state(env, fns):
    reset_to, _, _ = fns
    s = reset_to(jax.random.PRNGKey(0), 1, 10)
    r = int(env.bank.starts[1]) + 10  # clip 1's frame 10
    np.testing.assert_allclose(s.data.qpos, env.ref_qpos[r], atol=1e-7)
    np.testing.assert_allclose(s.data.qvel, env.ref_qvel[r], atol=1e-7)
    np.testing.assert_allclose(s.data.xpos[env.ee_ids], env.ref_ee[r], atol=1e-7)
    assert s.ref_obs.shape == (env.ref_obs_size,) and s.prop_obs.shape == (env.prop_obs_size,)
    # The body sits on the reference, so the look-ahead is the reference's own motion.
    np.testing.assert_allclose(s.ref_obs[: env.model.nq], env.ref_qpos[r + 1] - env.ref_qpos[r], atol=1e-6)
    assert env.model.opt.timestep == pytest.approx(1 / 200 / 5)


def test_resets_from_bound_poses_are_the_backends_own(env):
    assert env.backend.name == "native" and env.ref_poses is not None
    slow = copy.copy(env)
    slow.ref_poses = None  # posed by the backend's host call, as a noisy reset is
    last = int(env.lengths.min()) - 1
    clips, frames = jnp.array([0, 0, 1, 2, 2]), jnp.array([0, last, 7, 1, 30])
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    a = jax.jit(jax.vmap(env.reset_to))(keys, clips, frames)
    b = jax.jit(jax.vmap(slow.reset_to))(keys, clips, frames)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert "callback" not in str(jax.make_jaxpr(jax.vmap(env.reset))(keys))


def test_step_advances_reference_and_truncates_at_clip_end(env, fns):
    reset_to, step_no_reset, _ = fns
    last = int(env.lengths[0]) - 2
    s = reset_to(jax.random.PRNGKey(0), 0, last)
    s = step_no_reset(s, jnp.full(env.action_size, -3.0))
    assert int(s.frame) == last + 1 and int(s.steps) == 1
    assert float(s.truncated) == 1.0 and float(s.terminated) == 0.0
    assert np.isfinite(float(s.reward))


def test_tracking_loss_terminates(env, fns):
    reset_to, step_no_reset, _ = fns
    s = reset_to(jax.random.PRNGKey(0), 0, 0)
    # Pull hard with every muscle for many steps: the arm leaves the slow reference.
    for _ in range(30):
        s = step_no_reset(s, jnp.full(env.action_size, 5.0))
        if float(s.terminated):
            break
    assert float(s.terminated) == 1.0
    assert (
        float(s.metrics["error/joint_deg"]) > np.rad2deg(0.3)
        or float(s.metrics["error/ee_mm"]) > 1e3 * env.term_cfg.max_ee_error_m
    )


def test_non_finite_physics_ends_episode_cleanly(env, fns):
    reset_to, _, step = fns
    s = reset_to(jax.random.PRNGKey(0), 0, 0)
    s = step(s, jnp.full(env.action_size, jnp.nan))
    assert float(s.terminated) == 1.0 and float(s.metrics["episode/unstable"]) == 1.0
    assert float(s.reward) == 0.0
    # Auto-reset: the next state is a fresh, finite episode.
    assert int(s.steps) == 0
    assert np.all(np.isfinite(s.data.qpos)) and np.all(np.isfinite(s.ref_obs)) and np.all(np.isfinite(s.prop_obs))


def test_random_resets_cover_clips_and_frames(env):
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(1), 64))
    assert len(set(np.asarray(states.clip).tolist())) == 3
    assert np.all(np.asarray(states.frame) < np.asarray(env.lengths)[np.asarray(states.clip)] - 1)
    assert len(set(np.asarray(states.frame).tolist())) > 20


def test_first_frame_starts():
    clips = make_reaching_clips(3, seed=5)
    env = ImitationEnv(EnvConfig(first_frame_start_prob=1.0), _bind(clips), BODY.compile(), BODY.end_effectors)
    frames = jax.jit(jax.vmap(lambda k: env.reset(k).frame))(jax.random.split(jax.random.PRNGKey(2), 32))
    assert np.all(np.asarray(frames) == 0)
