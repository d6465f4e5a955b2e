"""Domain randomisation: config checks, draws, their effect on both backends, and their records.

A tiny two-link arm and a block on a floor (below) stand in for a body where
a property needs a physical check: the arm moves free of any constraint, the
block slides on the floor under a motor's push.
"""

from __future__ import annotations

import dataclasses
import json

import h5py
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.bodies import get_body
from mimic_mjx.config import ConfigError, RandomizeConfig
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.environments.backends import make_backend
from mimic_mjx.environments.randomize import PARAMS, Randomizer, apply_to_model, physics_params
from mimic_mjx.training.experiment import build_env, build_eval_env

ARM_AND_BLOCK = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1"/>
    <body name="upper" pos="0 0 1">
      <joint name="shoulder" axis="0 1 0" damping="0.02" armature="0.001"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1" contype="0" conaffinity="0"/>
      <body name="lower" pos="0.3 0 0">
        <joint name="elbow" axis="0 1 0" damping="0.01" armature="0.0005"/>
        <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.025" mass="0.5" contype="0" conaffinity="0"/>
      </body>
    </body>
    <body name="block" pos="0 0.5 0.05">
      <joint name="block_x" type="slide" axis="1 0 0"/>
      <joint name="block_z" type="slide" axis="0 0 1"/>
      <geom type="box" size="0.05 0.05 0.05" mass="0.2"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="shoulder" ctrlrange="-1 1"/>
    <position joint="elbow" kp="5" kv="0.1" ctrlrange="-1 1"/>
    <motor joint="block_x" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
CTRL = jnp.array([0.8, 0.5, 1.0])  # the block is pushed with 1 N; it weighs ~2 N
ALL = RandomizeConfig(
    friction_scale=(0.2, 1.5),
    mass_scale=(0.7, 1.4),
    com_shift=(-0.5, 0.5),
    damping_scale=(0.5, 2.0),
    armature_scale=(0.5, 2.0),
    strength_scale=(0.6, 1.4),
)


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_string(ARM_AND_BLOCK)


@pytest.fixture(scope="module")
def native(model):
    return make_backend("native", model, threads=2)


def _draws(model, cfg, n, seed=0):
    return jax.vmap(Randomizer(model, cfg).draw)(jax.random.split(jax.random.PRNGKey(seed), n))


def _run(backend, model, params, steps=50, n=None):
    """qpos (envs, steps, nq) of ``steps`` 5-substep control steps from rest under CTRL, one env per draw."""
    n = n or (len(next(iter(params.values()))) if params else 1)
    q0, v0 = jnp.zeros(model.nq), jnp.zeros(model.nv)

    def one(p):
        def body(d, _):
            d = backend.step(d, CTRL, backend.view(d).act, 5, params=physics_params(p))
            return d, backend.view(d).qpos

        return jax.lax.scan(body, backend.init(q0, v0), None, length=steps)[1]

    return np.asarray(jax.jit(jax.vmap(one))(params if params else {"_": jnp.zeros(n)}))


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"mass_scale": [0.0, 1.2]},
            r"randomize.mass_scale must be a \[low, high\] pair with 0 < low <= high, got \[0, 1.2\]",
        ),
        ({"mass_scale": [1.3, 1.2]}, r"randomize.mass_scale .* got \[1.3, 1.2\]"),
        ({"friction_scale": [-0.1, 1.0]}, r"randomize.friction_scale .*0 <= low <= high, got \[-0.1, 1\]"),
        ({"com_shift": [-0.5, 1.5]}, r"randomize.com_shift .*-1 <= low <= high <= 1, got \[-0.5, 1.5\]"),
        ({"damping_scale": [-1.0, 1.0]}, r"randomize.damping_scale .* got \[-1, 1\]"),
        ({"armature_scale": [0.5, float("inf")]}, r"randomize.armature_scale .* got \[0.5, inf\]"),
        ({"strength_scale": [0.0, 0.0]}, r"randomize.strength_scale .*0 < low"),
        ({"strength_scale": [float("nan"), 1.0]}, r"randomize.strength_scale .* got \[nan, 1\]"),
        (
            {"mass_scale": [0.9, 1.0, 1.1]},
            r"randomize.mass_scale must be a \[low, high\] pair .* got \[0.9, 1.0, 1.1\]",
        ),
        ({"mass_scale": 1.2}, r"randomize.mass_scale must be a list"),
        ({"init_pose_noise_rad": -0.1}, r"randomize.init_pose_noise_rad must be in \[0, pi\] rad, got -0.1"),
        ({"mas_scale": [1, 1]}, r"did you mean 'randomize.mass_scale'"),
    ],
)
def test_bad_ranges_are_refused_naming_key_value_and_range(values, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.from_dict({"randomize": values})


def test_init_pose_noise_is_the_older_keys_noise():
    cfg = config_lib.from_dict({"randomize": {"init_pose_noise_rad": 0.05}, "env": {"reset_noise_rad": 0.05}})
    assert cfg.randomize.reset_noise(cfg.env.reset_noise_rad) == 0.05
    assert RandomizeConfig().reset_noise(0.03) == 0.03  # the older key alone keeps working
    with pytest.raises(ConfigError, match="init_pose_noise_rad .0.1. and env.reset_noise_rad .0.05. set the same"):
        config_lib.from_dict({"randomize": {"init_pose_noise_rad": 0.1}, "env": {"reset_noise_rad": 0.05}})
    assert not RandomizeConfig().enabled and RandomizeConfig(init_pose_noise_rad=0.1).enabled


# -- draws -------------------------------------------------------------------------------------


def test_draws_differ_per_episode_and_stay_in_their_ranges(model):
    draws = _draws(model, ALL, 64)
    assert set(draws) == set(PARAMS.values())
    rz = Randomizer(model, ALL)
    for cfg_key, name in PARAMS.items():
        lo, hi = getattr(ALL, cfg_key)
        v, mask = np.asarray(draws[name]), np.broadcast_to(rz.masks[name], draws[name].shape[1:])
        acting = v[:, mask]
        assert acting.min() >= lo and acting.max() <= hi, name
        assert np.all(v[:, ~mask] == (0.0 if name == "com" else 1.0)), name  # e.g. the world body, the arm's geoms
        assert np.unique(acting[:, 0]).size == len(v), name  # a new value every episode
    assert np.all(draws["mass"][:, 0] == 1.0) and rz.masks["friction"].tolist() == [True, False, False, True]


def test_off_changes_nothing(model, native):
    """Nothing randomised: an empty draw, no extra backend inputs, no per-simulation model fields."""
    rz = Randomizer(model, RandomizeConfig())
    assert rz.draw(jax.random.PRNGKey(0)) == {} and physics_params({}) is None and rz.summary({}) == {}
    plain = _run(native, model, None, steps=10, n=2)
    assert all(randomized == () for _, randomized in native._batches)
    # The same numbers as the backend called without the argument.
    q0 = jnp.zeros(model.nq)
    d = jax.jit(lambda: native.step(native.init(q0, q0[: model.nv]), CTRL, jnp.zeros(model.na), 5))()
    np.testing.assert_array_equal(plain[0, 0], np.asarray(d.qpos))


def test_imitation_env_off_is_bit_identical_and_on_records_each_episode():
    clips = make_reaching_clips(2, seed=1, num_frames=40)
    base = config_lib.from_dict({"env": {"body": "mouse_forelimb", "backend": "native"}})
    off, on = build_env(base, clips), build_env(base.replace(randomize=ALL), clips)
    assert off.metric_names == tuple(k for k in on.metric_names if not k.startswith("randomize/"))
    assert {k for k in on.metric_names if k.startswith("randomize/")} == {
        "randomize/friction_scale", "randomize/mass_scale", "randomize/com_shift_rms",
        "randomize/damping_scale", "randomize/armature_scale", "randomize/strength_scale",
    }  # fmt: skip
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    actions = jax.random.normal(jax.random.PRNGKey(4), (6, 4, off.action_size))

    def roll(env):
        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, s

        return jax.jit(lambda: jax.lax.scan(body, jax.vmap(env.reset)(keys), actions))()

    (s_off, t_off), (_, t_on) = roll(off), roll(on)
    start_off, start = jax.vmap(off.reset)(keys), jax.vmap(on.reset)(keys)
    assert s_off.randomize == {} and start_off.randomize == {}
    # The draw has its own random stream: episodes start where they would without it.
    for k in ("clip", "frame"):
        np.testing.assert_array_equal(getattr(start_off, k), getattr(start, k))
    np.testing.assert_array_equal(start_off.data.qpos, start.data.qpos)
    assert not np.allclose(t_off.data.qpos[0], t_on.data.qpos[0])  # other physics from the first step
    # Each transition's metrics carry its episode's draw; an episode that ends brings a new one.
    summary = jax.vmap(on.randomizer.summary)
    m = t_on.metrics
    np.testing.assert_allclose(m["randomize/mass_scale"][0], summary(start.randomize)["randomize/mass_scale"])
    ended = np.argwhere(np.asarray((t_on.terminated + t_on.truncated) > 0)[:-1])
    assert len(ended)
    t, e = ended[0]
    before = start.randomize["mass"][e] if t == 0 else t_on.randomize["mass"][t - 1, e]
    after = t_on.randomize["mass"][t, e]
    assert not np.array_equal(before, after)
    new = summary(jax.tree.map(lambda x: x[t], t_on.randomize))["randomize/mass_scale"][e]
    np.testing.assert_allclose(m["randomize/mass_scale"][t + 1, e], new)
    # Evaluation keeps it off unless asked; asked, each rollout draws its physics but starts on the reference.
    assert build_eval_env(base.replace(randomize=ALL), clips).randomizer.keys == ()
    noisy = dataclasses.replace(ALL, init_pose_noise_rad=0.1)
    opt_in = build_eval_env(base.replace(randomize=noisy), clips, randomize=True)
    assert opt_in.randomizer.keys == on.randomizer.keys and opt_in.cfg.reset_noise_rad == 0.0


# -- physics -----------------------------------------------------------------------------------


def _fixed(model, n=1, **ranges):
    """``n`` draws of degenerate ranges: every acting element gets exactly the given value."""
    return _draws(model, RandomizeConfig(**{k: (v, v) for k, v in ranges.items()}), n)


def test_a_draw_changes_the_dynamics_in_the_expected_direction(model, native):
    x = lambda params, steps=50: _run(native, model, params, steps)[0, -1, 2]  # block position after 0.5 s, m
    # No friction: the push accelerates the block as 1/mass (x = F t^2 / 2m).
    light, heavy = (
        x(_fixed(model, friction_scale=0.0, mass_scale=0.5)),
        x(_fixed(model, friction_scale=0.0, mass_scale=2)),
    )
    assert heavy > 0.05 and light / heavy == pytest.approx(4.0, rel=0.02)
    # Friction holds the block against the push (mu m g = 2 N > 1 N) until it is scaled down.
    assert x(_fixed(model, friction_scale=1.0)) < 0.01 < 0.3 < x(_fixed(model, friction_scale=0.1))
    assert x(_fixed(model, friction_scale=0.0, strength_scale=2.0)) == pytest.approx(
        2 * x(_fixed(model, friction_scale=0.0)), rel=0.02
    )
    # Damping slows the arm's swing (gravity and the shoulder's torque drive it).
    swing = lambda params: np.abs(_run(native, model, params, 20)[0, -1, 0])
    assert swing(_fixed(model, damping_scale=50.0)) < 0.7 * swing(_fixed(model, damping_scale=1.0))


def test_native_draw_is_the_recompiled_models_mj_step(model, native):
    """Per-simulation fields and constants are those of a model edited and mj_setConst-ed on the host."""
    draws = _draws(model, ALL, 3, seed=5)
    traj = _run(native, model, draws, steps=30)
    for i in range(3):
        m = apply_to_model(model, {k: v[i] for k, v in draws.items()})
        d = mujoco.MjData(m)
        for t in range(30):
            d.time, d.ctrl[:] = 0.0, CTRL
            for _ in range(5):
                mujoco.mj_step(m, d)
            np.testing.assert_array_equal(traj[i, t], d.qpos.astype(np.float32), err_msg=f"draw {i}, step {t}")
            # The backend's state round-trips through float32 between control steps.
            for k in ("qpos", "qvel", "act", "qacc_warmstart"):
                getattr(d, k)[:] = getattr(d, k).astype(np.float32)


def test_mjx_and_native_agree_for_the_same_draw(model, native):
    """Same draw, same trajectory: float64 C engine vs float32 MJX.

    The arm moves free of constraints under every kind of draw; the block
    slides on the floor under a friction draw. (Contact and joint-limit
    softness come from constants MuJoCo derives from the masses: the native
    backend recomputes them per draw, MJX keeps the body's own, so under a
    mass draw a constrained body's trajectories differ slightly; see
    docs/tracking-task.md.)
    """
    mjx = make_backend("mjx", model)
    draws = _draws(model, ALL, 3, seed=7)
    a, b = _run(native, model, draws), _run(mjx, model, draws)
    np.testing.assert_allclose(a[..., :2], b[..., :2], atol=2e-5)
    assert np.abs(a[:, -1, :2] - a[0, -1, :2]).max() > 0.05  # the draws really differ
    friction = _draws(model, RandomizeConfig(friction_scale=(0.1, 1.0)), 4, seed=1)
    a, b = _run(native, model, friction, 100), _run(mjx, model, friction, 100)
    np.testing.assert_allclose(a[:, -1, 2], b[:, -1, 2], atol=1e-4)
    assert a[:, -1, 2].max() > 0.3 and a[:, -1, 2].min() < 0.01  # one slid, one held


# -- training and records ----------------------------------------------------------------------


def test_training_with_randomisation_logs_the_draws_and_rollouts_record_them(tmp_path):
    from mimic_mjx.analysis.rollout import roll_out
    from mimic_mjx.cli.main import main

    clips = make_reaching_clips(2, seed=2, num_frames=40)
    write_clips(tmp_path / "clips.h5", clips)
    values = tiny_config_dict() | {
        "env": {"body": "mouse_forelimb", "backend": "native"},
        "randomize": {"mass_scale": [0.8, 1.2], "strength_scale": [0.9, 1.1], "init_pose_noise_rad": 0.02},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    run = tmp_path / "run"
    argv = ["train", "--config", str(tmp_path / "config.yaml"), "--clips", str(tmp_path / "clips.h5")]
    assert main([*argv, "--run-dir", str(run)]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for rec in lines:
        assert 0.8 <= rec["randomize/mass_scale"] <= 1.2 and 0.9 <= rec["randomize/strength_scale"] <= 1.1
        assert 0.0 < rec["randomize/init_pose_rms_deg"] <= np.rad2deg(0.02)
    # Rollouts keep the body's own physics unless asked; asked, each clip and seed records its draw.
    roll_out(run, clips, tmp_path / "plain.h5")
    roll_out(run, clips, tmp_path / "drawn.h5", seeds=2, randomize=True)
    with h5py.File(tmp_path / "plain.h5") as f:
        assert "randomize" not in f[f"clips/{clips[0].name}"] and not f.attrs["randomized"]
    with h5py.File(tmp_path / "drawn.h5") as f:
        g = f[f"clips/{clips[0].name}/randomize"]
        assert f.attrs["randomized"] and set(g) == {"mass", "strength"}
        mass = g["mass"][()]
        assert mass.shape[0] == 2  # (seeds, bodies)
        acting = mass[:, mass[0] != 1.0]
        assert acting.size and acting.min() >= 0.8 and acting.max() <= 1.2
        assert not np.array_equal(mass[0], mass[1])  # each seed its own body ...
        np.testing.assert_array_equal(mass, f[f"clips/{clips[1].name}/randomize/mass"][()])  # ... on every clip
        # The physiology is computed on each rollout's own body (here: its muscles' strength).
        c = f[f"clips/{clips[0].name}"]
        body = apply_to_model(get_body("mouse_forelimb").compile_trainable(), {k: c[f"randomize/{k}"][1] for k in g})
        d = mujoco.MjData(body)
        d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:] = (c[k][1, 0] for k in ("qpos", "qvel", "activation", "ctrl"))
        mujoco.mj_forward(body, d)
        np.testing.assert_allclose(c["actuator_force"][1, 0], d.actuator_force, rtol=1e-5)
