"""Scoring against what was measured: registered markers vs the recorded keypoints."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.config import EnvConfig, TerminationConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.environments.rewards import Errors

BODY = get_body("mouse_forelimb")


def _env(clips, **termination):
    model = BODY.compile()
    bank = bind_clips(clips, model, BODY.name, BODY.end_effectors, 6, 5, keypoint_bodies=BODY.keypoint_bodies)
    return ImitationEnv(EnvConfig(), bank, model, BODY.end_effectors, termination=TerminationConfig(**termination))


@pytest.fixture(scope="module")
def shifted():
    """Reaches whose wrist keypoint was recorded 0.5 mm off the registered marker, one frame missing."""
    clip = make_reaching_clips(1, seed=3, num_frames=40)[0]
    kp = clip.keypoints.copy()
    wrist = clip.keypoint_names.index("Wrist")
    kp[:, wrist, 0] += 0.0005
    kp[7, wrist] = np.nan  # a keypoint the tracker lost in one frame
    # A marker offset in the elbow's frame: the recorded keypoint sits there too.
    offsets = np.zeros((3, 3), np.float32)
    elbow = clip.keypoint_names.index("Elbow")
    offsets[elbow] = (0.001, 0.0, 0.0)
    import mujoco

    model = BODY.compile()
    d = mujoco.MjData(model)
    eid = model.body(BODY.keypoint_bodies["Elbow"]).id
    for t in range(clip.num_frames):
        d.qpos[:] = clip.qpos[t]
        mujoco.mj_kinematics(model, d)
        kp[t, elbow] = d.xpos[eid] + d.xmat[eid].reshape(3, 3) @ offsets[elbow]
    return dataclasses.replace(clip, keypoints=kp, marker_offsets=offsets)


def test_reference_state_scores_the_recorded_offset(shifted):
    env = _env([shifted])
    assert env.keypoint_names == ("Shoulder", "Elbow", "Wrist")
    for frame in (3, 7):
        s = jax.jit(env.reset_to)(jax.random.PRNGKey(0), 0, frame)
        err = env.errors(env.view(s), 0, frame)
        wrist = 0.0 if frame == 7 else 0.5
        np.testing.assert_allclose(1e3 * np.asarray(err.keypoint), [0.0, 0.0, wrist], atol=2e-3)
        np.testing.assert_array_equal(np.asarray(err.keypoint_valid), [1.0, 1.0, 0.0 if frame == 7 else 1.0])


def test_clips_without_keypoints_score_nothing(shifted):
    bare = dataclasses.replace(shifted, name="bare", keypoint_names=(), keypoints=None, marker_offsets=None)
    env = _env([shifted, bare])
    s = jax.jit(env.reset_to)(jax.random.PRNGKey(0), 1, 3)
    err = env.errors(env.view(s), 1, 3)
    assert float(jnp.sum(err.keypoint_valid)) == 0.0 and float(jnp.sum(err.keypoint)) == 0.0


def _errors(joint_rad, kp_m, valid=1.0):
    return Errors(
        root_pos=jnp.zeros(()),
        root_angle=jnp.zeros(()),
        joint=jnp.full(4, joint_rad),
        joint_vel=jnp.zeros(4),
        body=jnp.zeros(1),
        ee=jnp.zeros(1),
        keypoint=jnp.full(3, kp_m) * valid,
        keypoint_valid=jnp.full(3, valid),
    )


@pytest.mark.parametrize(
    "joint, kp, valid, gated, lost",
    [
        (1.0, 0.0001, 1.0, True, False),  # a joint off while the keypoints are tracked: go on
        (1.0, 0.0001, 1.0, False, True),  # unless the user asks for joint terminations regardless
        (1.0, 0.0001, 0.0, True, True),  # no keypoints recorded: joints decide
        (0.1, 0.005, 1.0, True, True),  # keypoints lost
        (0.1, 0.0001, 1.0, True, False),
    ],
)
def test_joint_terminations_defer_to_tracked_keypoints(shifted, joint, kp, valid, gated, lost):
    env = _env([shifted], max_joint_error_rad=0.6, max_keypoint_error_m=0.003, joints_only_with_keypoints_lost=gated)
    phys = env.view(env.reset_to(jax.random.PRNGKey(0), 0, 3))
    assert bool(env._lost(phys, _errors(joint, kp, valid), 0, 3)) == lost
