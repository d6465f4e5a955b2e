"""Rollout datasets: what a trained controller and its body did on each clip.

``collect`` rolls the controller out on every clip from its first frame, ``S``
times per clip (different seeds: only a stochastic policy or injected noise
makes them differ), in one jit-compiled, vmapped scan on any physics backend.
``derive_physiology`` adds what the task does not carry (muscle lengths and
velocities, contact forces), computed by MuJoCo's forward dynamics at each
recorded state on the simulated model. ``write_rollouts`` writes the layout of
docs/rollout-format.md, the one file layout of ``mimic rollout``, ``mimic
experiment`` and ``mimic evaluate``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.agents.policy import Policy
from mimic_mjx.analysis.rollout_format import FORMAT, FORMAT_VERSION
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.environments.randomize import apply_to_model
from mimic_mjx.errors import RunDirError
from mimic_mjx.files import atomic_hdf5


def check_sizes(policy: Policy, env: ImitationEnv) -> None:
    """The controller's observation and action sizes must be those the task builds now."""
    want = (policy.ref_obs_size, policy.prop_obs_size, policy.action_size)
    have = (env.ref_obs_size, env.prop_obs_size, env.action_size)
    if want != have:
        raise RunDirError(
            f"{policy.run_dir}: its controller expects observations of sizes {want[0]}/{want[1]} and "
            f"{want[2]} actions, but its task now builds {have[0]}/{have[1]} and {have[2]}; "
            f"was it trained with another version of the body or task?"
        )


def _activation_per_actuator(env: ImitationEnv, act, ctrl):
    """One activation per actuator: its (first) activation state, or its control when it has none."""
    m = env.model
    adr = np.asarray(m.actuator_actadr)
    has = adr >= 0
    if not has.any():
        return ctrl
    return jnp.where(jnp.asarray(has), act[np.where(has, adr, 0)], ctrl)


def _rollout_fn(policy: Policy, env: ImitationEnv, num_steps: int, stochastic: bool, latent_noise_std: float):
    act_fn = policy.inference_fn(
        deterministic=not stochastic, record_layers=True, latent_noise_std=float(latent_noise_std)
    )

    def run_one(pp, clip, key, xfrc):
        # With domain randomisation (build_eval_env(randomize=True)) each rollout draws its own physics.
        state = env.reset_to(jax.random.fold_in(key, 1) if env.randomizer.enabled else jax.random.PRNGKey(0), clip, 0)

        def body(carry, xs):
            state, dec_state, alive = carry
            k, f = xs
            a, extras = act_fn(pp, state.ref_obs, state.prop_obs, k, dec_state)
            nxt = env.step_no_reset(state, a, f)
            in_clip = state.frame + env.cfg.control_every < env.lengths[clip]
            tracked = alive & in_clip & (nxt.terminated == 0)
            # Once tracking is lost the rollout freezes (and is NaN-ed on the host).
            new_state = jax.tree.map(lambda n, o: jnp.where(tracked, n, o), nxt, state)
            new_dec = jnp.where(tracked, extras["decoder_state"], dec_state)
            phys = env.view(nxt)
            err = env.errors(phys, clip, nxt.frame)
            ctrl = env.action_to_ctrl(a, env.view(state).qpos)
            rec = {
                "qpos": phys.qpos,
                "qvel": phys.qvel,
                "ctrl": ctrl,
                "act": phys.act,
                "activation": _activation_per_actuator(env, phys.act, ctrl),
                "latent_mean": extras["latent_mean"],
                "latent_var": jnp.exp(extras["latent_log_var"]),
                "latent": extras["latent"],
                "layers": extras["layers"],
                "ee_pos": phys.xpos[env.ee_ids],
                "body_pos": phys.xpos[env.body_ids],
                "joint_error": err.joint,
                "ee_error": err.ee,
                "body_error": err.body,
                "root_error": err.root_pos,
                "markers": env.markers(phys, clip),
                "keypoint_error": jnp.where(err.keypoint_valid > 0, err.keypoint, jnp.nan),
                "keypoint_valid": err.keypoint_valid,
                "muscle_force": phys.actuator_force,  # as the backend left it after the step
                "metrics": nxt.metrics,
                "tracked": tracked,
            }
            return (new_state, new_dec, tracked), rec

        keys = jax.random.split(key, num_steps)
        # The recurrent decoder starts each rollout (an episode from the clip's first frame) from zeros.
        start = (state, policy.initial_state(), jnp.bool_(True))
        _, recs = jax.lax.scan(body, start, (keys, xfrc))
        return recs, state.randomize

    return jax.jit(jax.vmap(run_one, in_axes=(None, 0, 0, None)))


def collect(
    policy: Policy,
    env: ImitationEnv,
    *,
    stochastic: bool = False,
    seeds: int = 1,
    seed: int = 0,
    latent_noise_std: float = 0.0,
    xfrc=None,
) -> dict:
    """Roll out every clip of ``env`` ``seeds`` times; arrays (clips, seeds, steps, ...) on the host.

    ``xfrc``: external wrenches (steps, nbody, 6) applied at each control step
    of every rollout (a force pulse); ``latent_noise_std``: noise added to the
    latent at every step. Steps after the loss of tracking hold NaN.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    check_sizes(policy, env)
    ce = env.cfg.control_every
    num_steps = int((env.bank.lengths.max() - 1) // ce)
    n_clips = env.bank.num_clips
    if xfrc is None:
        xfrc = np.zeros((num_steps, env.model.nbody, 6), np.float32)
    xfrc = jnp.asarray(xfrc, jnp.float32)[:num_steps]
    run = _rollout_fn(policy, env, num_steps, stochastic, latent_noise_std)
    clips = jnp.repeat(jnp.arange(n_clips), seeds)
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(seed), s))(jnp.tile(jnp.arange(seeds), n_clips))
    recs, drawn = jax.tree.map(np.array, jax.device_get(run(policy.params, clips, keys, xfrc)))  # writable copies
    recs = jax.tree.map(lambda x: x.reshape((n_clips, seeds) + x.shape[1:]), recs)
    tracked = recs["tracked"]
    for _name, v in _floats(recs):
        mask = tracked.reshape(tracked.shape + (1,) * (v.ndim - tracked.ndim))
        v[...] = np.where(mask, v, np.nan)
    recs["xfrc"] = np.asarray(xfrc)
    if drawn:  # each rollout's domain-randomisation draw, (clips, seeds, ...)
        recs["randomize"] = {k: v.reshape((n_clips, seeds) + v.shape[1:]) for k, v in drawn.items()}
    return recs


def _floats(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _floats(v, f"{prefix}{k}/")
        elif np.issubdtype(v.dtype, np.floating):
            yield prefix + k, v


def _subtree_of(model: mujoco.MjModel, roots) -> np.ndarray:
    """(nbody,) index of the end effector whose subtree holds each body (-1: none)."""
    owner = np.full(model.nbody, -1)
    for i, r in enumerate(roots):
        for b in range(model.nbody):
            a = b
            while a > 0 and a != r:
                a = model.body_parentid[a]
            if a == r:
                owner[b] = i
    return owner


def derive_physiology(env: ImitationEnv, recs: dict) -> dict:
    """Muscle lengths, velocities, forces and end-effector contact forces at every recorded state.

    MuJoCo's forward dynamics on the simulated model (perturbed or not; with a
    rollout's randomised physics where it drew any) at each (qpos, qvel, act,
    ctrl, applied wrench); NaN where the rollout was not tracked.
    """
    m = env.model
    d = mujoco.MjData(m)
    owner = _subtree_of(m, env.ee_ids)
    C, S, T = recs["tracked"].shape
    out = {
        "muscle_length": np.full((C, S, T, m.nu), np.nan, np.float32),
        "muscle_velocity": np.full((C, S, T, m.nu), np.nan, np.float32),
        "actuator_force": np.full((C, S, T, m.nu), np.nan, np.float32),
        "contact_force": np.full((C, S, T, len(env.ee_ids), 3), np.nan, np.float32),
    }
    f6 = np.zeros(6)
    drawn = recs.get("randomize", {})  # each rollout's physics: the model as its draw changed it
    model_of = functools.cache(lambda c, s: apply_to_model(env.model, {k: v[c, s] for k, v in drawn.items()}))
    for c, s, t in zip(*np.nonzero(recs["tracked"]), strict=True):
        m = model_of(c, s) if drawn else env.model
        d.qpos[:], d.qvel[:], d.ctrl[:] = recs["qpos"][c, s, t], recs["qvel"][c, s, t], recs["ctrl"][c, s, t]
        if m.na:
            d.act[:] = recs["act"][c, s, t]
        d.xfrc_applied[:] = recs["xfrc"][t]
        mujoco.mj_forward(m, d)
        out["muscle_length"][c, s, t] = d.actuator_length
        out["muscle_velocity"][c, s, t] = d.actuator_velocity
        out["actuator_force"][c, s, t] = d.actuator_force
        cf = np.zeros((len(env.ee_ids), 3))
        for i in range(d.ncon):
            con = d.contact[i]
            mujoco.mj_contactForce(m, d, i, f6)
            # Contact frame rows are its axes; MuJoCo's force acts on geom2's body, its opposite on geom1's.
            world = con.frame.reshape(3, 3).T @ f6[:3]
            for geom, sign in ((con.geom2, 1.0), (con.geom1, -1.0)):
                k = owner[m.geom_bodyid[geom]]
                if k >= 0:
                    cf[k] += sign * world
        out["contact_force"][c, s, t] = cf
    return out


def layer_order(layers) -> list[str]:
    """Hidden layers in the order signals pass them: encoder_0, encoder_1, ..., then a recurrent decoder's
    decoder_cell, decoder_hidden (its state after the step), then decoder_0, ..."""
    stage, recurrent = {"encoder": 0, "decoder": 1}, {"cell": -2, "hidden": -1}

    def key(name):
        net, _, pos = name.rpartition("_")
        return stage.get(net, 2), int(pos) if pos.isdigit() else recurrent.get(pos, -3), name

    return sorted(layers, key=key)


def run_id(run_dir: Path, update: int) -> str:
    """Identity of a controller: its run's config and checkpoint step."""
    text = (Path(run_dir) / "config.json").read_bytes() if run_dir else b""
    return hashlib.sha256(text + f"@{update}".encode()).hexdigest()[:16]


def survival(tracked: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Fraction of rollouts still tracked after each step, among those whose clip lasts that long.

    ``tracked``: (clips, seeds, Tmax) bool; ``steps``: (clips,) steps of each clip.
    """
    T = tracked.shape[-1]
    t = np.arange(T)
    alive = np.cumprod(tracked, axis=-1).astype(bool)
    long_enough = (t[None, :] < steps[:, None])[:, None, :]
    n = (long_enough * np.ones_like(alive)).sum(axis=(0, 1))
    return np.where(n > 0, (alive & long_enough).sum(axis=(0, 1)) / np.maximum(n, 1), np.nan)


_PER_STEP = [
    "qpos",
    "qvel",
    "ctrl",
    "activation",
    "actuator_force",
    "muscle_length",
    "muscle_velocity",
    "contact_force",
    "ee_pos",
    "body_pos",
    "latent_mean",
    "latent_var",
    "latent",
    "joint_error",
    "ee_error",
    "body_error",
    "root_error",
]


def _body_hashes(policy: Policy, env: ImitationEnv) -> dict:
    """Which model of the body rolled out: the hash clips record, and that of the simulated model (unperturbed)."""
    from mimic_mjx.bodies import get_body

    body = policy.body or get_body(env.cfg.body)  # the run's stored body, else (older runs) the named one
    return {"body_hash": body.body_hash(), "body_model_sha256": body.simulated_hash()}


def write_rollouts(
    path: str | Path,
    env: ImitationEnv,
    policy: Policy,
    recs: dict,
    *,
    stochastic: bool,
    perturbation: str = "",
) -> dict:
    """Write ``recs`` (``collect`` + ``derive_physiology``) as docs/rollout-format.md; a per-clip summary."""
    from mimic_mjx.version import __version__

    m, bank = env.model, env.bank
    ce, dt = env.cfg.control_every, env.control_dt
    C, S, Tmax = recs["tracked"].shape
    steps = (np.asarray(bank.lengths) - 1) // ce
    summary = {"clips": {}}
    str_dt = h5py.string_dtype()
    with atomic_hdf5(path) as f:
        f.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            body=env.cfg.body,
            **_body_hashes(policy, env),
            run_dir=str(policy.run_dir or ""),
            run_id=run_id(policy.run_dir, policy.update) if policy.run_dir else "",
            checkpoint_update=int(policy.update),
            control_dt_s=float(dt),
            stochastic=bool(stochastic),
            seeds=int(S),
            perturbation=perturbation,
            randomized=bool(recs.get("randomize")),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            mimic_version=__version__,
        )
        names = lambda xs: np.asarray(list(xs), dtype=object)
        f.create_dataset("joint_names", data=names(env.joint_names), dtype=str_dt)
        f.create_dataset("joint_qpos_index", data=np.asarray(env.hinge_q, np.int32))
        f.create_dataset("actuator_names", data=names(m.actuator(a).name for a in range(m.nu)), dtype=str_dt)
        f.create_dataset("actuator_is_muscle", data=m.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE))
        f.create_dataset("end_effectors", data=names(env.end_effectors), dtype=str_dt)
        f.create_dataset("tracked_bodies", data=names(env.tracked_bodies), dtype=str_dt)
        f.create_dataset("keypoint_names", data=names(env.keypoint_names), dtype=str_dt)
        f.create_dataset("layer_names", data=names(layer_order(recs["layers"])), dtype=str_dt)
        curve = survival(recs["tracked"], steps)
        f.create_dataset("survival/time_s", data=(np.arange(Tmax) + 1) * dt)
        f.create_dataset("survival/fraction", data=curve)
        for i, name in enumerate(bank.names):
            T, L = int(steps[i]), int(bank.lengths[i])
            frames = (np.arange(T) + 1) * ce
            g = f.create_group(f"clips/{name}")
            frac = float(recs["tracked"][i, :, :T].sum(axis=-1).mean() / T)
            g.attrs.update(frames=L, steps=T, fraction_tracked=frac)
            g.create_dataset("time_s", data=frames / bank.fps)
            g.create_dataset("tracked", data=recs["tracked"][i, :, :T])
            for key in _PER_STEP:
                g.create_dataset(key, data=recs[key][i, :, :T], compression="gzip")
            K = len(env.keypoint_names)
            g.create_dataset("markers", data=recs["markers"][i, :, :T])
            g.create_dataset("keypoint_error", data=recs["keypoint_error"][i, :, :T])
            for lname, v in recs["layers"].items():
                g.create_dataset(f"layers/{lname}", data=v[i, :, :T], compression="gzip")
            g.create_dataset("reference_qpos", data=bank.clip_frames(i, "qpos", frames))
            g.create_dataset("reference_ee_pos", data=bank.clip_frames(i, "ee_pos", frames))
            g.create_dataset("reference_body_pos", data=bank.clip_frames(i, "body_pos", frames))
            ref_kp = np.zeros((T, K, 3), np.float32)
            if K:
                valid = bank.clip_frames(i, "keypoint_valid", frames) > 0
                ref_kp = np.where(valid[..., None], bank.clip_frames(i, "keypoints", frames), np.nan)
            g.create_dataset("reference_keypoints", data=ref_kp)
            for key, v in recs.get("randomize", {}).items():
                g.create_dataset(f"randomize/{key}", data=v[i])
            summary["clips"][name] = {"steps": T, "fraction_tracked": frac}
    summary["survival"] = {"time_s": ((np.arange(Tmax) + 1) * dt).tolist(), "fraction": curve.tolist()}
    summary["mean_fraction_tracked"] = float(np.mean([c["fraction_tracked"] for c in summary["clips"].values()]))
    return summary


def roll_out(
    run_dir: str | Path,
    clips: Sequence,
    out: str | Path,
    *,
    stochastic: bool = False,
    seeds: int = 1,
    seed: int = 0,
    randomize: bool = False,
) -> dict:
    """``mimic rollout``: roll the run's controller out on ``clips`` and write the dataset ``out``.

    ``randomize``: each rollout draws the body's physics from the run's ``randomize.*`` ranges.
    """
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.experiment import build_eval_env

    policy = load_policy(run_dir)
    env = build_eval_env(policy.config, clips, body=policy.body, randomize=randomize)
    recs = collect(policy, env, stochastic=stochastic, seeds=seeds, seed=seed)
    recs.update(derive_physiology(env, recs))
    return write_rollouts(out, env, policy, recs, stochastic=stochastic)
