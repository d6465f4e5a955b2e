"""Tasks without reference kinematics (environments/tasks.py): observations, rewards, success, resets, scaling."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.bodies import BodyModel, get_body
from mimic_mjx.bodies.scaling import scale_spec
from mimic_mjx.config import TASK_NAMES
from mimic_mjx.data.synthetic import make_reaching_clips, make_still_clip
from mimic_mjx.environments.task_env import Goal, TaskProgress, advance_progress
from mimic_mjx.environments.tasks import TASKS, TaskError, held_out_targets, make_task_env
from mimic_mjx.errors import BackendError, ConfigError
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.ppo import PPOTrainer

FORELIMB, RAT = get_body("mouse_forelimb"), get_body("rat")
FORELIMB_DT, RAT_DT = 0.005, 0.02  # the control steps of their imitation configs (200 Hz / 50 Hz clips)


def _cfg(body: str, *overrides: str):
    return config_lib.apply_overrides(
        config_lib.ExperimentConfig(), [f"env.body={body}", "env.backend=native", *overrides]
    )


def _env(task: str, body: BodyModel, dt: float, *overrides: str):
    return make_task_env(task, _cfg(body.name, *overrides), body, dt)


@pytest.fixture(scope="module")
def reach():
    return _env("reach_target", FORELIMB, FORELIMB_DT)


@pytest.fixture(scope="module")
def go_to():
    return _env("go_to_target", RAT, RAT_DT, "env.substeps=10")


@pytest.fixture(scope="module")
def bowl():
    return _env("bowl_escape", RAT, RAT_DT, "env.substeps=10")


def _run(env, steps: int, n: int = 2, seed: int = 0, scale: float = 0.3):
    """``n`` environments stepped (jit + vmap, auto-reset) under random actions; the states of every step."""
    reset = jax.jit(jax.vmap(env.reset))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, None)))
    state = reset(jax.random.split(jax.random.PRNGKey(seed), n))
    states = [state]
    for i in range(steps):
        action = scale * jax.random.normal(jax.random.PRNGKey(100 + i), (n, env.action_size))
        state = step(state, action, None)
        states.append(state)
    return states


def _holding_action(env):
    """The action whose controls hold the start pose (servos at rest, muscles off)."""
    from mimic_mjx.environments.locomotion import holding_controls

    data = mujoco.MjData(env.model)
    data.qpos[:] = np.asarray(env._start[0])
    mujoco.mj_forward(env.model, data)
    lo, hi = env.model.actuator_ctrlrange.T
    frac = np.clip(2 * (holding_controls(env.model, data) - lo) / (hi - lo) - 1, -0.999, 0.999)
    return jnp.asarray(np.arctanh(frac), jnp.float32)


def test_registry_matches_config_names():
    assert tuple(TASKS) == TASK_NAMES


@pytest.mark.parametrize(
    "task, body, dt, clips",
    [
        ("reach_target", FORELIMB, FORELIMB_DT, lambda: make_reaching_clips(2, seed=0)),
        ("go_to_target", RAT, RAT_DT, lambda: [make_still_clip("rat", num_frames=20)]),
    ],
)
def test_proprioception_is_the_imitation_tasks(task, body, dt, clips):
    env = _env(task, body, dt)
    imitation = build_env(_cfg(body.name), clips(), body=body)
    assert env.prop_obs_size == imitation.prop_obs_size
    assert env.action_size == imitation.action_size
    state = jax.tree.map(lambda x: x[0], _run(env, 3, n=1)[-1])
    phys = env.view(state)
    _, prop = jax.jit(imitation._observe)(phys, 0, 0, state.prev_ctrl)
    # The same function of the same state; only the compiled programs around it differ (float rounding).
    np.testing.assert_allclose(np.asarray(prop), np.asarray(state.prop_obs), rtol=1e-5, atol=1e-6)


def test_reach_targets_lie_in_the_workspace(reach):
    targets = np.asarray(held_out_targets(reach, 64, seed=0))
    assert targets.shape == (64, 3)
    dist = np.linalg.norm(targets - reach.base, axis=1)
    assert np.all(dist <= reach.size * (1 + 1e-5))
    # Each is the end effector at some pose: a workspace point lies close by.
    nearest = np.min(np.linalg.norm(reach._points[None] - targets[:, None], axis=-1), axis=1)
    assert np.all(nearest < 0.1 * reach.size)
    # JAX forward kinematics agrees with MuJoCo's.
    angles = np.asarray([0.3, -0.2, 0.1, 0.8])[: len(reach._lo)]
    angles = np.clip(angles, reach._lo, reach._hi)
    data = mujoco.MjData(reach.model)
    data.qpos[reach.hinge_q] = angles
    mujoco.mj_kinematics(reach.model, data)
    np.testing.assert_allclose(np.asarray(jax.jit(reach.fk)(jnp.asarray(angles))), data.xpos[reach._ee], atol=1e-6)
    # Held-out draws are reproducible and not the training resets' draws.
    np.testing.assert_array_equal(targets, np.asarray(held_out_targets(reach, 64, seed=0)))
    starts = jax.jit(jax.vmap(reach.reset))(jax.random.split(jax.random.PRNGKey(0), 64))
    train = np.asarray(starts.target)
    assert not np.any(np.all(np.isclose(train[:, None], targets[None]), axis=-1))
    # The task observation is O(1): positions in reaches.
    obs = np.asarray(starts.ref_obs)
    assert obs.shape == (64, 6) and np.abs(obs).max() < 2.5


@pytest.mark.parametrize("name", TASK_NAMES)
def test_reward_terms_are_named_and_finite(name, reach, go_to, bowl):
    env = {"reach_target": reach, "go_to_target": go_to, "bowl_escape": bowl}[name]
    last = _run(env, 6)[-1]
    m = {k: np.asarray(v) for k, v in last.metrics.items()}
    assert all(np.all(np.isfinite(v)) for v in m.values())
    assert {f"reward/{t}" for t in env.reward_names} | {"reward/total"} == {k for k in m if k.startswith("reward/")}
    total = sum(m[f"reward/{t}"] for t in env.reward_names)
    np.testing.assert_allclose(total, m["reward/total"], rtol=1e-5, atol=1e-6)
    for k in ("task/distance_mm", "task/success", "task/reached", "task/time_to_reach_s", "effort/energy_mj"):
        assert k in m
    assert {"episode/length", "episode/terminated", "episode/unstable", "episode/success"} <= set(m)
    assert set(env.metric_names) == set(m)


def test_success_needs_the_goal_held_without_a_break():
    p = TaskProgress(jnp.zeros(()), jnp.int32(0), jnp.int32(-1), jnp.zeros(()), jnp.zeros(()))
    success, reached = [], []
    for step, within in enumerate([0, 1, 1, 0, 1, 1, 1, 0], start=1):
        goal = Goal(jnp.zeros(()), jnp.bool_(within), {})
        p = advance_progress(p, goal, jnp.int32(step), jnp.ones(2), hold_steps=3, dt=0.5)
        success.append(float(p.success))
        reached.append(int(p.reached_step))
    assert success == [0, 0, 0, 0, 0, 0, 1, 1]  # held 3 steps only from step 5 to 7; kept after
    assert reached == [-1, 2, 2, 2, 2, 2, 2, 2]
    assert float(p.energy) == pytest.approx(8 * 2 * 0.5)


def test_reach_success_after_the_hold_time():
    env = _env("reach_target", FORELIMB, FORELIMB_DT, "task.hold_s=0.02", "task.success_radius=0.5")
    assert env.hold_steps == 4 and env.success_radius_m == pytest.approx(0.5 * env.size)
    start_ee = env.view(env.reset(jax.random.PRNGKey(0))).xpos[env._ee]
    state = jax.jit(env.reset_to)(jax.random.PRNGKey(0), start_ee)  # the target where the hand already is
    step = jax.jit(env.step_no_reset)
    relaxed = jnp.full(env.action_size, -5.0)  # muscles off
    seen = []
    for _ in range(6):
        state = step(state, relaxed)
        seen.append((float(state.metrics["task/reached"]), float(state.metrics["task/success"])))
    assert seen == [(1, 0), (1, 0), (1, 0), (1, 1), (1, 1), (1, 1)]
    assert float(state.metrics["task/time_to_reach_s"]) == pytest.approx(env.control_dt)


def test_episodes_end_and_restart(reach):
    env = _env("reach_target", FORELIMB, FORELIMB_DT, "task.episode_s=0.015")
    assert env.episode_steps == 3
    states = _run(env, 4, n=2)
    assert [int(s.steps[0]) for s in states] == [0, 1, 2, 0, 1]
    ended = states[3]
    assert np.all(np.asarray(ended.truncated) == 1) and np.all(np.asarray(ended.metrics["episode/length"]) == 3)
    # The new episode's goal and progress are fresh.
    assert not np.allclose(np.asarray(ended.target), np.asarray(states[2].target))
    assert np.all(np.asarray(ended.progress.reached_step) == -1)


def _turn(qpos, qvel, target, angle):
    """The state and target rotated by ``angle`` about the vertical through the origin."""
    c, s = math.cos(angle), math.sin(angle)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    q, v = np.array(qpos, np.float64), np.array(qvel, np.float64)
    q[:3] = rz @ q[:3]
    turn = np.array([math.cos(angle / 2), 0, 0, math.sin(angle / 2)])
    w1, v1, w2, v2 = turn[0], turn[1:], q[3], q[4:7]
    q[3:7] = np.concatenate([[w1 * w2 - v1 @ v2], w1 * v2 + w2 * v1 + np.cross(v1, v2)])
    v[:3] = rz @ v[:3]  # world linear velocity; the angular one is in the root's own frame
    return q, v, rz @ np.asarray(target)


def test_go_to_observation_does_not_change_when_the_scene_turns(go_to):
    state = jax.tree.map(lambda x: x[0], _run(go_to, 5, n=1)[-1])
    phys = go_to.view(state)
    q, v, target = np.asarray(phys.qpos), np.asarray(phys.qvel), np.asarray(state.target)
    observe = jax.jit(lambda q, v, t: go_to.observe(go_to.backend.view(go_to.backend.init(q, v)), t, state.prev_ctrl))
    a = observe(q, v, target)
    b = observe(*_turn(q, v, target, 2.1))
    assert float(jnp.linalg.norm(a[0][:2])) > 0.5  # the target is off to one side, at body lengths
    np.testing.assert_allclose(a[0], b[0], atol=1e-4)
    np.testing.assert_allclose(a[1], b[1], atol=2e-3)


def test_bowl_is_in_the_model_and_the_rat_stands_in_it(bowl):
    m = bowl.model
    hfield = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "bowl")
    assert hfield >= 0 and m.geom_type[hfield] == mujoco.mjtGeom.mjGEOM_HFIELD
    assert m.hfield_size[0][2] == pytest.approx(bowl.bowl_depth)
    assert bowl.bowl_radius == pytest.approx(3.0 * bowl.size) and bowl.goal_scale == bowl.bowl_radius
    # Ground height: the bowl's floor at the centre, the rim height beyond the rim (both ways of computing it).
    assert float(bowl.ground_height(jnp.zeros(2))) == pytest.approx(bowl._floor_z)
    rim = jnp.asarray([1.2 * bowl.bowl_radius, 0.0])
    assert float(bowl.ground_height(rim)) == pytest.approx(bowl._floor_z + bowl.bowl_depth, rel=1e-5)
    # At the start the paws touch the bowl, not the floor plane below it.
    data = mujoco.MjData(m)
    data.qpos[:] = np.asarray(bowl._start[0])
    mujoco.mj_forward(m, data)
    touched = {m.geom(g).name for c in data.contact[: data.ncon] for g in (c.geom1, c.geom2)}
    assert "bowl" in touched and "floor" not in touched
    # Half a second holding the rest pose: still standing at its height above the bowl.
    state = bowl.reset(jax.random.PRNGKey(0))
    step, hold = jax.jit(bowl.step_no_reset), _holding_action(bowl)
    for _ in range(25):
        state = step(state, hold)
    phys = bowl.view(state)
    assert float(state.terminated) == 0
    assert float(bowl.height(phys)) == pytest.approx(bowl.standing_height, rel=0.2)
    assert float(bowl.upright(phys)) > 0.95
    assert float(state.metrics["task/success"]) == 0  # still in the bowl


def test_bowl_on_mjx_is_refused_with_the_reason():
    # MJX (JAX) has no heightfield-ellipsoid collision and the rat's hands are ellipsoids.
    with pytest.raises(BackendError, match="HFIELD.*ELLIPSOID.*native"):
        make_task_env("bowl_escape", _cfg("rat", "env.backend=mjx"), RAT, RAT_DT)


def _scaled_forelimb(s: float) -> BodyModel:
    def build():
        spec = FORELIMB.build_spec()
        scale_spec(spec, s)
        return spec

    return dataclasses.replace(FORELIMB, name=f"forelimb_x{s:g}", build_spec=build, build_trainable_spec=None)


def _toy_xml(s: float) -> str:
    """A box on four straight legs with hip servos, on a floor; every length times ``s``."""
    legs, servos = [], []
    for name, x, y in (("fl", 1, 1), ("fr", 1, -1), ("hl", -1, 1), ("hr", -1, -1)):
        legs.append(
            f'<body name="leg_{name}" pos="{0.08 * s * x} {0.04 * s * y} 0">'
            f'<joint name="hip_{name}" axis="0 1 0" range="-40 40"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 {-0.1 * s}" size="{0.01 * s}" contype="0" conaffinity="1"/></body>'
        )
        servos.append(f'<position joint="hip_{name}" kp="{2.0 * s**4}" ctrlrange="-0.7 0.7"/>')
    return f"""<mujoco><option timestep="0.002"/><worldbody>
  <geom name="floor" type="plane" size="{20 * s} {20 * s} {0.1 * s}" contype="1" conaffinity="0"/>
  <body name="torso" pos="0 0 {0.12 * s}"><freejoint name="root"/>
    <geom type="box" size="{0.1 * s} {0.05 * s} {0.02 * s}" density="500" contype="0" conaffinity="1"/>
    {"".join(legs)}</body></worldbody><actuator>{"".join(servos)}</actuator></mujoco>"""


def _toy(s: float) -> BodyModel:
    xml = _toy_xml(s)
    return BodyModel(f"toy_x{s:g}", "test", lambda: mujoco.MjSpec.from_string(xml), end_effectors=("leg_fl",))


def test_defaults_scale_with_the_bodys_size():
    small, large = _env("reach_target", FORELIMB, FORELIMB_DT), _env("reach_target", _scaled_forelimb(10), FORELIMB_DT)
    assert large.size == pytest.approx(10 * small.size, rel=1e-6)
    assert large.success_radius_m == pytest.approx(10 * small.success_radius_m, rel=1e-6)
    # The same draw of angles: the same target, seen in reaches.
    a, b = small.reset(jax.random.PRNGKey(3)), large.reset(jax.random.PRNGKey(3))
    np.testing.assert_allclose(a.ref_obs, b.ref_obs, atol=1e-4)
    for task in ("go_to_target", "bowl_escape"):
        one, four = _env(task, _toy(1), 0.02), _env(task, _toy(4), 0.02)
        assert one.size == pytest.approx(0.16) and four.size == pytest.approx(4 * one.size)
        assert four.goal_scale == pytest.approx(4 * one.goal_scale)
        assert four.standing_height == pytest.approx(4 * one.standing_height, rel=0.02)
        assert four.success_radius_m == pytest.approx(4 * one.success_radius_m)
    near, far = _env("go_to_target", _toy(1), 0.02)._dist, _env("go_to_target", _toy(4), 0.02)._dist
    assert far == pytest.approx(tuple(4 * d for d in near))
    assert near == pytest.approx((0.16, 0.48))  # 1 to 3 body lengths


def test_bodies_that_do_not_fit_the_task_are_refused():
    with pytest.raises(TaskError, match="reach_target needs a fixed-base body.*'rat' has a free root"):
        _env("reach_target", RAT, RAT_DT)
    with pytest.raises(TaskError, match="go_to_target needs a body with a free root.*'mouse_forelimb'.*fixed base"):
        _env("go_to_target", FORELIMB, FORELIMB_DT)
    with pytest.raises(TaskError, match="unknown task 'fly'; known tasks: reach_target, go_to_target, bowl_escape"):
        make_task_env("fly", _cfg("mouse_forelimb"), FORELIMB, FORELIMB_DT)
    with pytest.raises(TaskError, match="control step must be a positive"):
        make_task_env("reach_target", _cfg("mouse_forelimb"), FORELIMB, 0.0)
    with pytest.raises(ConfigError, match="known tasks: reach_target"):
        _cfg("mouse_forelimb", "task.name=reach")


def test_explicit_targets(reach):
    with pytest.raises(TaskError, match=r"outside the workspace of body 'mouse_forelimb'.*reaches .* mm from the base"):
        _env("reach_target", FORELIMB, FORELIMB_DT, "task.target_m=[0.05, 0.0, 0.0]")
    inside = np.round(reach._points[7], 5).tolist()
    env = _env("reach_target", FORELIMB, FORELIMB_DT, f"task.target_m={inside}")
    targets = np.asarray(jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 3)).target)
    np.testing.assert_allclose(targets, np.tile(inside, (3, 1)), atol=1e-6)


@pytest.mark.slow
def test_ppo_trains_on_a_task():
    values = tiny_config_dict()
    values["env"] = {"body": "mouse_forelimb", "backend": "native"}
    values["task"] = {"name": "reach_target", "episode_s": 0.02}
    cfg = config_lib.from_dict(values)
    trainer = PPOTrainer(cfg, make_task_env("reach_target", cfg, FORELIMB, FORELIMB_DT))
    state = trainer.init(jax.random.PRNGKey(0))
    for _ in range(2):
        state, metrics = trainer.update(state)
    assert float(metrics["episode/count"]) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert "episode/success" in metrics and "reward/reach" in metrics
