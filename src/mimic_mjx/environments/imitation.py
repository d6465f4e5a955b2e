"""Multi-clip imitation task over MJX, as pure functions of JAX arrays.

``reset`` and ``step`` are jit- and vmap-able. An episode starts at a random
clip and frame with the body placed in the reference state; each control step
applies muscle excitations for ``substeps`` physics steps and advances the
reference by ``control_every`` frames. Steps auto-reset when an episode ends,
reporting the reward, termination and truncation of the transition that ended it.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
from flax import struct
from mujoco import mjx

from mimic_mjx.config import EnvConfig
from mimic_mjx.data.binding import ReferenceBank, body_ids


@struct.dataclass
class EnvState:
    data: mjx.Data
    clip: jax.Array  # int32
    frame: jax.Array  # int32, reference frame the state corresponds to
    steps: jax.Array  # int32, control steps since the episode started
    prev_ctrl: jax.Array
    ref_obs: jax.Array
    prop_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array  # float 0/1: tracking lost or physics non-finite
    truncated: jax.Array  # float 0/1: clip ran out
    joint_error: jax.Array  # RMS joint-angle error, rad
    ee_error: jax.Array  # mean end-effector distance, m
    unstable: jax.Array  # float 0/1: physics produced non-finite values
    key: jax.Array


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def tracking_reward(cfg: EnvConfig, q_err, ee_err, ctrl, prev_ctrl, power):
    """Reward of one control step; all errors in SI units.

    q_err: (nq,) joint-angle errors (rad); ee_err: (n_ee,) end-effector distances (m);
    ctrl, prev_ctrl: (nu,) excitations; power: (nu,) muscle power (W).
    """
    r_joint = jnp.exp(-jnp.mean(jnp.square(q_err)) / cfg.joint_scale_rad ** 2)
    r_ee = jnp.exp(-jnp.mean(jnp.square(ee_err)) / cfg.ee_scale_m ** 2)
    cost = (cfg.ctrl_cost * jnp.mean(jnp.square(ctrl))
            + cfg.ctrl_change_cost * jnp.mean(jnp.square(ctrl - prev_ctrl))
            + cfg.energy_cost * jnp.sum(jnp.abs(power)))
    return cfg.joint_weight * r_joint + cfg.ee_weight * r_ee - cost


def reference_observation(ref_q, ref_ee, q, ee):
    """Look-ahead reference relative to the current state.

    ref_q: (H, nq), ref_ee: (H, n_ee, 3) future reference frames; q: (nq,), ee: (n_ee, 3).
    Positions are returned in millimetres to keep them O(1).
    """
    dq = ref_q - q[None]
    dee = (ref_ee - ee[None]) * 1e3
    return jnp.concatenate([dq.ravel(), dee.ravel()])


class ImitationEnv:
    """Imitation of a bank of reference clips by one body."""

    def __init__(self, cfg: EnvConfig, bank: ReferenceBank, model: mujoco.MjModel,
                 end_effectors: tuple[str, ...]):
        self.cfg = cfg
        model = copy.deepcopy(model)
        self.control_dt = cfg.control_every / bank.fps
        model.opt.timestep = self.control_dt / cfg.substeps
        self.model = model
        self.mx = mjx.put_model(model)
        self._blank = mjx.make_data(self.mx)
        self.bank = bank
        self.ref_qpos = jnp.asarray(bank.qpos)
        self.ref_qvel = jnp.asarray(bank.qvel)
        self.ref_ee = jnp.asarray(bank.ee_pos)
        self.lengths = jnp.asarray(bank.lengths)
        self.ee_ids = jnp.asarray(body_ids(model, end_effectors))
        self.end_effectors = end_effectors
        self.nu = model.nu
        lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        self.ctrl_lo, self.ctrl_hi = jnp.asarray(lo), jnp.asarray(hi)
        is_muscle = model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE)
        # Peak isometric force per muscle (N), to express forces as fractions.
        self.force_scale = jnp.asarray(jnp.where(is_muscle, jnp.abs(model.actuator_gainprm[:, 2]), 1.0))
        self.horizon_offsets = jnp.arange(1, cfg.horizon + 1) * cfg.control_every
        self.ref_obs_size = cfg.horizon * (model.nq + 3 * len(end_effectors))
        self.prop_obs_size = model.nq + model.nv + model.na + 2 * model.nu + 3 * len(end_effectors)
        self.action_size = model.nu
        # For each activation state, the actuator it belongs to (muscles have one each).
        self._act_of_actuator = jnp.asarray(
            [a for a in range(model.nu) for _ in range(model.actuator_actnum[a])], dtype=jnp.int32)

    # -- pure helpers -------------------------------------------------------
    def action_to_ctrl(self, action):
        """Map unbounded policy outputs to the actuators' control range."""
        return self.ctrl_lo + 0.5 * (jnp.tanh(action) + 1.0) * (self.ctrl_hi - self.ctrl_lo)

    def _ee(self, data):
        return data.xpos[self.ee_ids]

    def _observe(self, data, clip, frame, prev_ctrl):
        frames = frame + self.horizon_offsets
        ref_obs = reference_observation(self.ref_qpos[clip, frames], self.ref_ee[clip, frames],
                                        data.qpos, self._ee(data))
        prop_obs = jnp.concatenate([
            data.qpos, data.qvel, data.act,
            data.actuator_force / self.force_scale, prev_ctrl, self._ee(data).ravel() * 1e3,
        ])
        return ref_obs, prop_obs

    def reset_to(self, key, clip, frame) -> EnvState:
        """Start an episode at a given clip and frame, in the reference state."""
        noise = jax.random.uniform(key, (self.model.nq,), minval=-1.0, maxval=1.0) * self.cfg.reset_noise_rad
        data = self._blank.replace(qpos=self.ref_qpos[clip, frame] + noise, qvel=self.ref_qvel[clip, frame])
        # Kinematics suffice: mjx.step recomputes all dynamics from (qpos, qvel,
        # act, ctrl), and the first observation needs only positions; with zero
        # activation the muscles' active force is zero.
        data = mjx.kinematics(self.mx, data)
        prev_ctrl = jnp.zeros(self.nu)
        ref_obs, prop_obs = self._observe(data, clip, frame, prev_ctrl)
        zero = jnp.zeros(())
        return EnvState(data=data, clip=jnp.int32(clip), frame=jnp.int32(frame), steps=jnp.int32(0),
                        prev_ctrl=prev_ctrl, ref_obs=ref_obs, prop_obs=prop_obs, reward=zero,
                        terminated=zero, truncated=zero, joint_error=zero, ee_error=zero, unstable=zero,
                        key=key)

    def reset(self, key) -> EnvState:
        """Start an episode at a random clip and start frame."""
        k_clip, k_frame, k_first, k_noise, k_next = jax.random.split(key, 5)
        clip = jax.random.randint(k_clip, (), 0, self.bank.num_clips)
        last_start = self.lengths[clip] - self.cfg.control_every  # leave at least one step
        frame = jax.random.randint(k_frame, (), 0, last_start)
        frame = jnp.where(jax.random.uniform(k_first) < self.cfg.first_frame_start_prob, 0, frame)
        state = self.reset_to(k_noise, clip, frame)
        return state.replace(key=k_next)

    def step_no_reset(self, state: EnvState, action) -> EnvState:
        """Advance one control step; the state is not reset when the episode ends."""
        cfg = self.cfg
        ctrl = self.action_to_ctrl(action)
        # A clip's first frame is usually mid-movement, so its muscles are
        # already active; their state is not in the reference. Start each
        # episode with activations equal to the first excitations instead of
        # relaxed muscles the controller could not have had.
        act = jnp.where(state.steps == 0, ctrl[self._act_of_actuator], state.data.act) if self.model.na else state.data.act
        data = state.data.replace(ctrl=ctrl, act=act)
        data = jax.lax.fori_loop(0, cfg.substeps, lambda _, d: mjx.step(self.mx, d), data)
        # The last mjx.step evaluated kinematics before integrating; refresh them
        # so positions match the new joint angles exactly.
        data = mjx.kinematics(self.mx, data)
        frame = state.frame + cfg.control_every
        clip = state.clip
        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        q_err = data.qpos - self.ref_qpos[clip, frame]
        ee_err = jnp.linalg.norm(self._ee(data) - self.ref_ee[clip, frame], axis=-1)
        # MJX 3.17 moved actuator velocities into the implementation-specific part of Data.
        power = data.actuator_force * data._impl.actuator_velocity
        reward = tracking_reward(cfg, q_err, ee_err, ctrl, state.prev_ctrl, power)
        joint_error, ee_error = _rms(q_err), jnp.mean(ee_err)
        lost = (joint_error > cfg.max_joint_error_rad) | (ee_error > cfg.max_ee_error_m)
        terminated = lost | ~finite
        truncated = (frame + cfg.control_every >= self.lengths[clip]) & ~terminated
        ref_obs, prop_obs = self._observe(data, clip, frame, ctrl)
        # A blown-up state must not poison training: report zeros, end the episode.
        sanitize = lambda x: jnp.where(finite, jnp.nan_to_num(x, posinf=0.0, neginf=0.0), 0.0)
        return state.replace(
            data=data, frame=frame, steps=state.steps + 1, prev_ctrl=ctrl,
            ref_obs=sanitize(ref_obs), prop_obs=sanitize(prop_obs), reward=sanitize(reward),
            terminated=terminated.astype(jnp.float32), truncated=truncated.astype(jnp.float32),
            joint_error=sanitize(joint_error), ee_error=sanitize(ee_error),
            unstable=(~finite).astype(jnp.float32))

    def step(self, state: EnvState, action) -> EnvState:
        """Advance one control step, starting a new episode if this one ended."""
        nxt = self.step_no_reset(state, action)
        done = (nxt.terminated + nxt.truncated) > 0
        fresh = self.reset(nxt.key)
        # Keep the transition's outcome; take the state and observation of the new episode.
        merged = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, nxt)
        return merged.replace(reward=nxt.reward, terminated=nxt.terminated, truncated=nxt.truncated,
                              joint_error=nxt.joint_error, ee_error=nxt.ee_error, unstable=nxt.unstable,
                              key=jnp.where(done, fresh.key, jax.random.split(nxt.key)[0]))
