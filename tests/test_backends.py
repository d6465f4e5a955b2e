"""Physics backends and the free-root tracking task.

The native backend needs no compilation, so the rat runs here in seconds; the
MJX comparison uses the small forelimb (its MJX step compiles in ~20 s).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.bodies import get_body
from mimic_mjx.config import EnvConfig, TerminationConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.clips import Clip
from mimic_mjx.data.synthetic import make_reaching_clips, make_still_clip
from mimic_mjx.environments.backends import default_backend, make_backend, warp_installed
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.environments.native import NativeBackend
from mimic_mjx.errors import BackendError, BindingError, ConfigError

RAT = get_body("rat")
ARM = get_body("mouse_forelimb")


def _moving_rat_clip(num_frames: int = 40, fps: float = 50.0) -> Clip:
    """The rat's rest pose walking forward while turning, with its joints swinging."""
    still = make_still_clip("rat", num_frames=num_frames, fps=fps)
    t = np.arange(num_frames) / fps
    qpos = still.qpos.astype(np.float64).copy()
    qpos[:, 0] += 0.05 * t
    yaw = 0.4 * t
    qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
    model = RAT.compile_trainable()
    lo, hi = model.jnt_range[1:, 0], model.jnt_range[1:, 1]
    mid, amp = (lo + hi) / 2, (hi - lo) / 6
    qpos[:, 7:] = mid + amp * np.sin(2 * np.pi * 1.5 * t[:, None] + np.arange(model.nq - 7))
    qvel = np.gradient(qpos[:, 7:], 1 / fps, axis=0)
    vel = np.zeros((num_frames, model.nv))
    vel[:, 0] = 0.05
    vel[:, 5] = 0.4
    vel[:, 6:] = qvel
    return dataclasses.replace(still, name="rat_walk", qpos=qpos.astype(np.float32), qvel=vel.astype(np.float32))


def _rotate_clip(clip: Clip, angle: float, shift=(0.3, -0.2)) -> Clip:
    """The same clip with the whole scene turned about the vertical axis and moved."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    qz = np.array([math.cos(angle / 2), 0, 0, math.sin(angle / 2)])
    qpos, qvel = clip.qpos.astype(np.float64).copy(), clip.qvel.astype(np.float64).copy()
    qpos[:, :3] = qpos[:, :3] @ rot.T + np.array([*shift, 0.0])
    w, x, y, z = qz
    mul = np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])  # left multiplication by qz
    qpos[:, 3:7] = qpos[:, 3:7] @ mul.T
    qvel[:, :3] = qvel[:, :3] @ rot.T  # free-joint linear velocity is in the world frame
    return dataclasses.replace(clip, qpos=qpos.astype(np.float32), qvel=qvel.astype(np.float32))


def _rat_env(clips, **termination):
    cfg = EnvConfig(body="rat", backend="native", substeps=10)
    model = RAT.compile_trainable()
    bank = bind_clips(
        clips, model, "rat", RAT.end_effectors, cfg.horizon + 1, cfg.horizon, tracked_bodies=RAT.tracked()
    )
    return ImitationEnv(
        cfg, bank, model, RAT.end_effectors, RAT.tracked(), termination=TerminationConfig(**termination)
    )


@pytest.fixture(scope="module")
def rat_walk():
    return _moving_rat_clip()


def test_observations_do_not_change_when_the_scene_turns_about_the_vertical(rat_walk):
    env = _rat_env([rat_walk])
    turned = _rat_env([_rotate_clip(rat_walk, 2.1)])
    assert not np.allclose(env.ref_qpos[:, :3], turned.ref_qpos[:, :3], atol=1e-3)
    key = jax.random.PRNGKey(0)
    a = jax.jit(env.reset_to)(key, 0, 7)
    b = jax.jit(turned.reset_to)(key, 0, 7)
    np.testing.assert_allclose(a.ref_obs, b.ref_obs, atol=2e-3)
    np.testing.assert_allclose(a.prop_obs, b.prop_obs, atol=2e-3)
    # Off the reference: a state the physics produced, and the same state turned.
    action = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (env.action_size,))
    a1 = jax.jit(env.step_no_reset)(a, action)
    q, v = _rotate_state(a1.data.qpos, a1.data.qvel, 2.1)
    ctrl = env.action_to_ctrl(action)
    obs_a = env._observe(env.view(a1.replace(data=env.backend.init(a1.data.qpos, a1.data.qvel))), 0, 8, ctrl)
    obs_b = turned._observe(turned.backend.view(turned.backend.init(q, v)), 0, 8, ctrl)
    assert float(jnp.max(jnp.abs(obs_a[0][:75]))) > 1.0  # the body is off the reference
    np.testing.assert_allclose(obs_a[0], obs_b[0], atol=2e-3)
    np.testing.assert_allclose(obs_a[1], obs_b[1], atol=2e-3)


def _rotate_state(qpos, qvel, angle, shift=(0.3, -0.2)):
    clip = Clip(
        name="s", body="rat", fps=50.0, joint_names=(), qpos=np.asarray(qpos)[None], qvel=np.asarray(qvel)[None]
    )
    turned = _rotate_clip(clip, angle, shift)
    return jnp.asarray(turned.qpos[0]), jnp.asarray(turned.qvel[0])


def test_rat_reset_places_the_body_on_the_reference(rat_walk):
    env = _rat_env([rat_walk])
    s = jax.jit(env.reset_to)(jax.random.PRNGKey(0), 0, 5)
    np.testing.assert_allclose(s.data.qpos, env.ref_qpos[5], atol=1e-6)  # one clip: its frame 5 is row 5
    np.testing.assert_allclose(s.data.xpos[env.body_ids], env.ref_body[5], atol=1e-6)
    assert s.ref_obs.shape == (env.ref_obs_size,) and s.prop_obs.shape == (env.prop_obs_size,)
    # Root part of the first look-ahead frame: the reference's own motion in the heading frame (mm).
    step_mm = 1e3 * np.linalg.norm(env.ref_qpos[6, :2] - env.ref_qpos[5, :2])
    assert float(jnp.linalg.norm(s.ref_obs[:2])) == pytest.approx(step_mm, rel=1e-3)


def _callback_resets(env: ImitationEnv) -> ImitationEnv:
    """``env`` with its resets posed by the backend's host call, as a noisy reset is."""
    other = copy.copy(env)
    other.ref_poses = None
    return other


def _assert_same_states(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_rat_resets_from_bound_poses_are_the_backends_own(rat_walk):
    env = _rat_env([rat_walk, dataclasses.replace(_rotate_clip(rat_walk, 2.1), name="turned")])
    assert env.ref_poses is not None and env.ref_poses[0].shape == (len(env.bank.qpos), env.model.nbody, 3)
    slow = _callback_resets(env)
    clips, frames = jnp.array([0, 0, 0, 1, 1, 1]), jnp.array([0, 5, 21, 3, 30, 44])
    keys = jax.random.split(jax.random.PRNGKey(4), 6)
    fast = jax.vmap(env.reset_to)
    assert "callback" not in str(jax.make_jaxpr(fast)(keys, clips, frames))
    _assert_same_states(jax.jit(fast)(keys, clips, frames), jax.jit(jax.vmap(slow.reset_to))(keys, clips, frames))
    # Steps with automatic resets: the same trajectory.
    keys = jax.random.split(jax.random.PRNGKey(5), 8)

    def run(e):
        def body(s, k):
            s = jax.vmap(e.step)(s, jax.random.normal(k, (8, e.action_size)))
            return s, s

        return jax.lax.scan(body, jax.vmap(e.reset)(keys), jax.random.split(jax.random.PRNGKey(6), 12))[1]

    a, b = jax.jit(lambda: run(env))(), jax.jit(lambda: run(slow))()
    assert float(jnp.sum(a.terminated + a.truncated)) > 0  # some episodes restarted
    _assert_same_states(a, b)


def test_noisy_resets_and_other_models_are_posed_by_the_backend(rat_walk):
    model = RAT.compile_trainable()
    bank = bind_clips([rat_walk], model, "rat", RAT.end_effectors, 6, 5, tracked_bodies=RAT.tracked())
    cfg = EnvConfig(body="rat", backend="native", reset_noise_rad=0.05)
    noisy = ImitationEnv(cfg, bank, model, RAT.end_effectors, RAT.tracked())
    assert noisy.ref_poses is None and noisy.noisy_starts is not None
    # Noisy starts are posed in advance exactly as the backend poses a fresh state, and differ between draws.
    starts = [jax.jit(noisy.reset_to)(jax.random.PRNGKey(k), 0, 9).data for k in range(4)]
    for s0 in starts:
        by_host = noisy.backend.init(s0.qpos, s0.qvel)
        np.testing.assert_array_equal(s0.xpos, by_host.xpos)
        np.testing.assert_array_equal(s0.xquat, by_host.xquat)
        dev = np.asarray(s0.qpos - noisy.ref_qpos[9])
        assert np.abs(dev).max() <= 0.05 + 1e-6 and np.abs(dev[noisy.hinge_q]).max() > 0
        assert np.all(dev[:7] == 0)  # the free root is not perturbed
    assert len({float(s0.qpos[10]) for s0 in starts}) > 1
    # A bank bound with another model: its poses are the environment model's, recomputed.
    moved = copy.deepcopy(model)
    moved.body_pos[2] += 0.01
    env = ImitationEnv(dataclasses.replace(cfg, reset_noise_rad=0.0), bank, moved, RAT.end_effectors, RAT.tracked())
    assert not np.array_equal(env.ref_poses[0], bank.xpos)
    key = jax.random.PRNGKey(0)
    _assert_same_states(jax.jit(env.reset_to)(key, 0, 9), jax.jit(_callback_resets(env).reset_to)(key, 0, 9))


@pytest.mark.parametrize("what", ["root_distance", "fall", "orientation"])
def test_free_root_terminations(rat_walk, what):
    env = _rat_env([rat_walk], max_root_error_m=0.04, max_root_drop_m=0.03, max_root_angle_rad=0.8)
    s = jax.jit(env.reset_to)(jax.random.PRNGKey(0), 0, 5)
    q = s.data.qpos
    if what == "root_distance":
        q = q.at[0].add(0.2)
    elif what == "fall":
        q = q.at[2].add(-0.05)
    else:
        q = q.at[3:7].set(jnp.array([0.0, 1.0, 0.0, 0.0]))  # upside down
    s = s.replace(data=env.backend.init(q, s.data.qvel))
    nxt = jax.jit(env.step_no_reset)(s, jnp.zeros(env.action_size))
    assert float(nxt.terminated) == 1.0 and float(nxt.truncated) == 0.0
    assert float(nxt.metrics["episode/unstable"]) == 0.0


def test_native_blow_up_ends_the_episode_and_is_counted(rat_walk):
    env = _rat_env([rat_walk])
    s = jax.jit(env.reset_to)(jax.random.PRNGKey(0), 0, 5)
    s = s.replace(data=s.data.replace(qvel=s.data.qvel.at[10].set(1e12)))
    nxt = jax.jit(env.step_no_reset)(s, jnp.zeros(env.action_size))
    assert float(nxt.metrics["episode/unstable"]) == 1.0 and float(nxt.terminated) == 1.0
    assert np.all(np.isfinite(nxt.ref_obs)) and np.all(np.isfinite(nxt.prop_obs)) and np.isfinite(float(nxt.reward))
    fresh = jax.jit(env.step)(s, jnp.zeros(env.action_size))  # auto-reset: training goes on
    assert float(fresh.metrics["episode/unstable"]) == 1.0 and int(fresh.steps) == 0
    assert np.all(np.isfinite(fresh.data.qpos))


@pytest.mark.slow
def test_native_backend_is_deterministic_across_thread_counts(rat_walk):
    env = _rat_env([rat_walk])
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(3), 6))
    ctrl = jax.vmap(env.action_to_ctrl)(0.5 * jax.random.normal(jax.random.PRNGKey(4), (6, env.action_size)))
    model = env.model

    def stepper(backend):
        return jax.jit(jax.vmap(lambda d, c: backend.step(d, c, d.act, 10)))

    out = []
    for threads in (1, 2):
        step = stepper(NativeBackend(model, threads))
        out.append(jax.device_get(step(states.data, ctrl)))
    for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1]), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("other", ["mjx", pytest.param("warp", marks=pytest.mark.gpu)])
def test_native_and_mjx_give_the_same_forelimb_trajectory(other):
    """Same model, initial state and controls: C engine (float64) vs MJX or Warp (float32)."""
    if other == "warp" and not warp_installed():
        pytest.skip('NVIDIA Warp is not installed (pip install -e ".[warp]")')
    model = ARM.compile_trainable()
    model.opt.timestep = 0.001
    native, mjx_b = make_backend("native", model), make_backend(other, model)
    clip = make_reaching_clips(1, seed=3)[0]
    q0, v0 = jnp.asarray(clip.qpos[0]), jnp.asarray(clip.qvel[0])
    ctrls = jax.random.uniform(jax.random.PRNGKey(0), (40, model.nu), minval=0.0, maxval=0.6)

    def run(backend):
        def body(d, c):
            d = backend.step(d, c, backend.view(d).act, 5)
            return d, backend.view(d)

        _, traj = jax.lax.scan(body, backend.init(q0, v0), ctrls)
        return traj

    a, b = jax.jit(lambda: run(native))(), jax.jit(lambda: run(mjx_b))()
    # Stated tolerance: 40 control steps (200 physics steps, 0.2 s) of muscle-driven
    # motion agree to 2 mrad in joint angle, 0.02 in activation and 5 um in wrist position.
    np.testing.assert_allclose(a.qpos, b.qpos, atol=2e-3)
    np.testing.assert_allclose(a.act, b.act, atol=2e-2)
    wrist = ARM.end_effectors[0]
    wid = model.body(wrist).id
    np.testing.assert_allclose(a.xpos[:, wid], b.xpos[:, wid], atol=5e-6)
    assert float(jnp.max(jnp.abs(a.qpos[-1] - a.qpos[0]))) > 0.05  # the arm really moved


def test_backend_errors():
    if not warp_installed():
        with pytest.raises(BackendError, match="pip install"):
            make_backend("warp", ARM.compile(), "mouse_forelimb")
    # The rat's full-contact registration model has collision pairs MJX lacks.
    with pytest.raises(BackendError, match="cannot run on backend 'mjx'.*native"):
        make_backend("mjx", RAT.compile(), "rat")
    with pytest.raises(BackendError, match="unknown physics backend"):
        make_backend("bullet", ARM.compile())
    with pytest.raises(ConfigError, match="env.backend must be one of.*did you mean 'native'"):
        config_lib.from_dict({"env": {"backend": "nativ"}})


def test_auto_backend_on_cpu_is_the_bodys_measured_choice():
    if jax.default_backend() == "gpu":
        assert default_backend("rat") == "mjx"
    else:
        assert default_backend("rat") == RAT.cpu_backend
        assert default_backend("mouse_forelimb") == ARM.cpu_backend


def test_clips_of_another_body_are_refused(rat_walk):
    with pytest.raises(BindingError, match="made for body 'rat'"):
        bind_clips([rat_walk], ARM.compile_trainable(), ARM.name, ARM.end_effectors, 6, 5)


@pytest.mark.slow
def test_bench_cli_prints_the_figures(capsys):
    from mimic_mjx.cli.main import main

    rc = main(
        [
            "bench",
            "--body",
            "mouse_forelimb",
            "--backend",
            "native",
            "--num-envs",
            "16",
            "--updates",
            "1",
            "--no-published",
            "--set",
            "ppo.unroll_length=4",
            "ppo.num_minibatches=2",
            "agent.encoder_layers=[16]",
            "agent.decoder_layers=[16]",
            "agent.value_layers=[16]",
        ]
    )
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fig = json.loads(last)
    for k in (
        "env_steps_per_s",
        "train_steps_per_s",
        "raw_physics_steps_per_s",
        "first_update_s",
        "num_envs",
        "substeps",
        "backend",
    ):
        assert k in fig
    assert fig["backend"] == "native" and fig["num_envs"] == 16 and fig["substeps"] == 5
    assert fig["env_steps_per_s"] > 0 and fig["train_steps_per_s"] > 0 and fig["raw_physics_steps_per_s"] > 0
    # Raw physics is timed in pieces between the other calls: the pooled rate lies within the pieces' range.
    lo, hi = fig["raw_physics_steps_per_s_range"]
    assert lo <= fig["raw_physics_steps_per_s"] <= hi and fig["raw_physics_pieces"] >= 4
    assert fig["train_vs_raw"] == pytest.approx(fig["train_steps_per_s"] / fig["raw_physics_steps_per_s"], abs=2e-3)
    # The second raw figure starts from the states each workload was in.
    seen = fig["raw_physics_visited_steps_per_s"]
    assert seen["environment"] > 0 and seen["training"] > 0
    assert fig["env_vs_raw_visited"] == pytest.approx(fig["env_steps_per_s"] / seen["environment"], abs=2e-3)
    assert 0.0 < fig["train_physics_call_share"] < 1.0 and 0.0 < fig["env_physics_call_share"] < 1.0


@pytest.mark.slow
def test_fruit_fly_tracks_on_the_native_backend():
    fly = get_body("fruitfly")
    clip = make_still_clip("fruitfly", num_frames=12, fps=500.0)
    model = fly.compile_trainable()
    substeps = round(1 / 500.0 / model.opt.timestep)
    cfg = EnvConfig(body="fruitfly", backend="native", substeps=substeps, horizon=3)
    bank = bind_clips([clip], model, "fruitfly", fly.end_effectors, 4, 3, tracked_bodies=fly.tracked())
    env = ImitationEnv(cfg, bank, model, fly.end_effectors, fly.tracked())
    assert env.has_root and env.action_size == model.nu
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
    step = jax.jit(jax.vmap(env.step))
    for i in range(3):
        states = step(states, 0.1 * jax.random.normal(jax.random.PRNGKey(i), (4, env.action_size)))
    assert np.all(np.isfinite(states.ref_obs)) and np.all(np.isfinite(states.prop_obs))
    assert states.ref_obs.shape == (4, env.ref_obs_size)


def test_a_failed_start_leaves_no_run_folder(tmp_path, rat_walk):
    from mimic_mjx.training.trainer import train

    cfg = config_lib.from_dict({"env": {"body": "mouse_forelimb"}})
    with pytest.raises(BindingError, match="made for body 'rat'"):
        train(cfg, tmp_path / "run", [rat_walk], log=lambda m: None)
    if not warp_installed():
        cfg = config_lib.from_dict({"env": {"body": "rat", "backend": "warp", "substeps": 10}})
        with pytest.raises(BackendError, match="pip install"):
            train(cfg, tmp_path / "run", [rat_walk], log=lambda m: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_rat_trains_and_evaluation_reports_per_body_errors(tmp_path, rat_walk):
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.training.trainer import train

    cfg = config_lib.from_dict(
        {
            "name": "tiny_rat",
            "env": {"body": "rat", "backend": "native", "substeps": 10, "horizon": 2},
            "reward": {"body": {"weight": 1.0}, "root_pos": {"weight": 1.0}},
            "termination": {"max_body_error_m": 0.2, "max_ee_error_m": 0.2, "max_root_angle_rad": 3.0},
            "agent": {"encoder_layers": [16], "decoder_layers": [16], "value_layers": [16], "latent_dim": 4},
            "ppo": {"num_envs": 8, "unroll_length": 4, "num_minibatches": 2, "update_epochs": 1},
            "train": {"total_steps": 64, "checkpoint_every_updates": 1, "log_every_updates": 1},
        }
    )
    summary = train(cfg, tmp_path / "run", [rat_walk], log=lambda m: None)
    assert summary["updates"] == 2
    held_out = _rotate_clip(dataclasses.replace(rat_walk, name="turned_walk"), 1.0)
    ev = evaluate(tmp_path / "run", [held_out], tmp_path / "eval")
    clip = ev["clips"][0]
    assert set(clip["body_error_mm_per_body"]) == set(RAT.tracked()) and len(RAT.tracked()) == 18
    assert 0.0 < clip["fraction_tracked"] <= 1.0
    assert np.isfinite(ev["mean_body_error_mm"]) and np.isfinite(ev["mean_root_error_mm"])
    assert ev["mean_body_error_mm"] == pytest.approx(np.mean(list(clip["body_error_mm_per_body"].values())), rel=1e-3)
    import h5py

    with h5py.File(tmp_path / "eval" / "rollouts.h5") as f:
        g = f["clips/turned_walk"]
        steps = g["qpos"].shape[1]
        assert g["body_error"].shape == (1, steps, 18) and g["qpos"].shape[2] == 74
        assert len(f["joint_names"]) == 67 and f["joint_qpos_index"][0] == 7
