"""Multi-clip imitation task for any body, as pure functions of JAX arrays.

``reset`` and ``step`` are jit- and vmap-able. An episode starts at a random
clip and frame with the body placed in the reference state; each control step
holds the controls for ``substeps`` physics steps of the chosen backend
(``environments.physics``) and advances the reference by ``control_every``
frames. Steps auto-reset when an episode ends, reporting the reward,
termination and truncation of the transition that ended it.

Bodies with a free root joint (the rat, the fly) are observed egocentrically:
the reference ahead and the body's own pose are expressed in the heading frame
(the root's yaw), and orientations as rotations relative to the root, so
turning the whole scene about the vertical axis leaves every observation
unchanged. Fixed-base bodies (the forelimb) have no root terms.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from mimic_mjx.bodies.layout import JointLayout
from mimic_mjx.config import EnvConfig, RandomizeConfig, RewardConfig, TerminationConfig
from mimic_mjx.data.binding import ReferenceBank, body_ids
from mimic_mjx.environments.actions import ActionMap
from mimic_mjx.environments.backends import make_backend
from mimic_mjx.environments.envbase import AutoResetEnv
from mimic_mjx.environments.metrics import aggregate_metrics, step_metrics  # noqa: F401  (re-export)
from mimic_mjx.environments.proprio import proprioception
from mimic_mjx.environments.randomize import OFF as RANDOMIZE_OFF
from mimic_mjx.environments.randomize import Randomizer, physics_params
from mimic_mjx.environments.rewards import Errors, StepQuantities, masked_mean, reward_terms, rms
from mimic_mjx.environments.starts import (
    NOISY_STARTS_PER_FRAME,
    bank_poses,
    draw_clip,
    noisy_starts,
    sample_failure_start,
    start_frame_cdf,
)
from mimic_mjx.errors import BindingError
from mimic_mjx.quaternions import heading_matrix, quat_angle, quat_conj, quat_mul, quat_rotate


@struct.dataclass
class EnvState:
    data: object  # the backend's physics state (mjx.Data or native.NativeState)
    clip: jax.Array  # int32
    frame: jax.Array  # int32, reference frame the state corresponds to
    steps: jax.Array  # int32, control steps since the episode started
    prev_ctrl: jax.Array
    ref_obs: jax.Array
    prop_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array  # float 0/1: tracking lost, fallen or physics non-finite
    truncated: jax.Array  # float 0/1: clip ran out
    # The transition's record (see ``METRICS``): reward terms, errors, episode outcome.
    metrics: dict
    key: jax.Array
    # The episode's domain-randomisation draw (``environments.randomize``); {} when off.
    randomize: dict


def reference_observation(ref_q, ref_body, q, body, heading=None, ref_root=None, root=None):
    """Look-ahead reference relative to the current state, in the heading frame.

    ref_q: (H, nj) future joint angles; ref_body: (H, nb, 3) future tracked-body
    positions (m); q: (nj,), body: (nb, 3) current ones. For a free-root body also
    ``heading`` (3, 3), ``ref_root`` (H, 7) future root pose and ``root`` (7,)
    current root pose. Positions are returned in millimetres to keep them O(1).
    """
    to_local = jnp.eye(3) if heading is None else heading.T
    dbody = jnp.einsum("ij,hbj->hbi", to_local, ref_body - body[None]) * 1e3
    parts = [ref_q - q[None], dbody.reshape(dbody.shape[0], -1)]
    if ref_root is not None:
        dpos = (ref_root[:, :3] - root[None, :3]) @ to_local.T * 1e3
        drot = quat_mul(quat_conj(root[None, 3:7]), ref_root[:, 3:7])
        drot = drot * jnp.sign(drot[:, :1] + 1e-12)  # q and -q are the same rotation
        parts = [dpos, drot] + parts
    return jnp.concatenate(parts, axis=-1).ravel()


class ImitationEnv(AutoResetEnv):
    """Imitation of a bank of reference clips by one body, on one physics backend."""

    def __init__(
        self,
        cfg: EnvConfig,
        bank: ReferenceBank,
        model: mujoco.MjModel,
        end_effectors: Sequence[str],
        tracked_bodies: Sequence[str] | None = None,
        reward: RewardConfig = RewardConfig(),
        termination: TerminationConfig = TerminationConfig(),
        force_scale_model: mujoco.MjModel | None = None,
        randomize: RandomizeConfig = RANDOMIZE_OFF,
    ):
        # randomize.init_pose_noise_rad is env.reset_noise_rad's noise, recorded per episode.
        cfg = dataclasses.replace(cfg, reset_noise_rad=randomize.reset_noise(cfg.reset_noise_rad))
        self.cfg = cfg
        self.reward_cfg = reward
        self.term_cfg = termination
        model = copy.deepcopy(model)
        self.control_dt = cfg.control_every / bank.fps
        model.opt.timestep = self.control_dt / cfg.substeps
        self.model = model
        self.backend = make_backend(cfg.backend, model, cfg.body, cfg.native_threads)
        self.randomizer = Randomizer(model, randomize)
        self.bank = bank
        # device_put, not jnp.asarray: on a CPU the device arrays then share the bank's memory
        # instead of copying it (the bank is never written after binding).
        put = jax.device_put
        self.ref_qpos, self.ref_qvel = put(bank.qpos), put(bank.qvel)
        self.ref_ee, self.ref_body = put(bank.ee_pos), put(bank.body_pos)
        # Recorded keypoints (K = 0 when the clips have none).
        self.keypoint_names = bank.keypoint_names
        K, N, F = len(bank.keypoint_names), bank.num_clips, len(bank.qpos)
        self.ref_kp = put(bank.keypoints if K else np.zeros((F, 0, 3), np.float32))
        self.kp_valid = put(bank.keypoint_valid if K else np.zeros((F, 0), np.float32))
        self.kp_offsets = put(bank.marker_offsets if K else np.zeros((N, 0, 3), np.float32))
        self.kp_body_ids = body_ids(model, bank.keypoint_bodies) if K else np.zeros(0, int)
        self.lengths = jnp.asarray(bank.lengths)
        # The bank's frames are one flat axis: clip c's frame t is row starts[c] + t (``_rows``).
        self.starts = jnp.asarray(bank.starts)
        self.last_rows = jnp.asarray(bank.starts + bank.lengths + bank.pad - 1)
        self.length_cdf = start_frame_cdf(bank.lengths, cfg.control_every)  # env.clip_weights: length
        # Body poses of every reference frame, for resets without a host call
        # (``init_posed``); a noisy reset is posed by the backend instead.
        self.layout = JointLayout.from_model(model)
        self.ref_poses, self.noisy_starts = None, None
        if self.backend.init_takes_poses and cfg.reset_noise_rad == 0:
            self.ref_poses = tuple(put(p) for p in bank_poses(bank, model))
        elif self.backend.init_takes_poses:
            starts = noisy_starts(bank, model, self.layout.hinge_qpos, cfg.reset_noise_rad)
            self.noisy_starts = None if starts is None else tuple(put(a) for a in starts)
        self.end_effectors = tuple(end_effectors)
        self.tracked_bodies = tuple(self.end_effectors if tracked_bodies is None else tracked_bodies)
        # Index arrays stay NumPy: they are baked into the compiled code as constants.
        self.ee_ids = body_ids(model, self.end_effectors)
        self.body_ids = body_ids(model, self.tracked_bodies)
        if bank.body_pos.shape[1] != len(self.tracked_bodies):
            raise BindingError(
                f"the reference bank tracks {bank.body_pos.shape[1]} bodies but the task "
                f"tracks {len(self.tracked_bodies)}; bind the clips with the same tracked bodies"
            )
        self.has_root = self.layout.free_root
        self.hinge_q, self.hinge_v = self.layout.hinge_qpos, self.layout.hinge_dof
        # The joints the joint errors refer to (all but the free root), in qpos order.
        self.joint_names = self.layout.joint_names
        self.nu = model.nu
        self.actions = ActionMap(model, cfg.action, cfg.action_range_rad, body=str(cfg.body))
        is_muscle = model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE)
        # Muscle forces as fractions of their peak isometric force; other actuators as they are.
        # Peak forces from ``force_scale_model`` where given (an experiment's unperturbed body).
        peak = np.abs((model if force_scale_model is None else force_scale_model).actuator_gainprm[:, 2])
        self.force_scale = jnp.asarray(np.where(is_muscle & (peak > 0), peak, 1.0))
        self.horizon_offsets = jnp.arange(1, cfg.horizon + 1) * cfg.control_every
        self.action_size = model.nu
        # For each activation state, the actuator it belongs to.
        self._act_of_actuator = np.asarray(
            [a for a in range(model.nu) for _ in range(model.actuator_actnum[a])], dtype=np.int32
        )

    # -- pure helpers -------------------------------------------------------
    def action_to_ctrl(self, action, qpos=None):
        """Map unbounded policy outputs to controls (``env.action``; ``relative`` needs the state's qpos)."""
        return self.actions(action, qpos)

    def view(self, state: EnvState):
        return self.backend.view(state.data)

    def _root(self, qpos):
        if self.has_root:
            return qpos[:7]
        return jnp.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def _rows(self, clip, frame):
        """Bank rows of ``clip``'s frames ``frame`` (any shape).

        A frame past the clip's padding reads its last padding frame, as the
        padded (clip, frame) arrays clamped it (all its padding frames are alike).
        """
        return jnp.minimum(self.starts[clip] + frame, self.last_rows[clip])

    def _observe(self, phys, clip, frame, prev_ctrl):
        rows = self._rows(clip, frame + self.horizon_offsets)
        root = self._root(phys.qpos)
        heading = heading_matrix(root[3:7]) if self.has_root else None
        body = phys.xpos[self.body_ids]
        ref_q = self.ref_qpos[rows]
        ref_obs = reference_observation(
            ref_q[:, self.hinge_q],
            self.ref_body[rows],
            phys.qpos[self.hinge_q],
            body,
            heading=heading,
            ref_root=ref_q[:, :7] if self.has_root else None,
            root=root if self.has_root else None,
        )
        prop_obs = proprioception(
            phys, self.hinge_q, self.hinge_v, self.body_ids, self.has_root, self.force_scale, prev_ctrl
        )
        return ref_obs, prop_obs

    def markers(self, phys, clip):
        """World positions (K, 3) of the registered markers on the simulated body."""
        ids = self.kp_body_ids
        return phys.xpos[ids] + quat_rotate(phys.xquat[ids], self.kp_offsets[clip])

    def errors(self, phys, clip, frame) -> Errors:
        """Tracking errors of a physics state against the reference frame."""
        row = self._rows(clip, frame)
        ref_q, ref_v = self.ref_qpos[row], self.ref_qvel[row]
        root, ref_root = self._root(phys.qpos), self._root(ref_q)
        body, ref_body = phys.xpos[self.body_ids], self.ref_body[row]
        ee, ref_ee = phys.xpos[self.ee_ids], self.ref_ee[row]
        # Poses compared relative to the root, so a root offset counts once (in the root term).
        rel = lambda x, r: x - r[None, :3]
        return Errors(
            root_pos=jnp.linalg.norm(root[:3] - ref_root[:3]),
            root_angle=quat_angle(quat_mul(quat_conj(root[3:7]), ref_root[3:7])),
            joint=phys.qpos[self.hinge_q] - ref_q[self.hinge_q],
            joint_vel=phys.qvel[self.hinge_v] - ref_v[self.hinge_v],
            body=jnp.linalg.norm(rel(body, root) - rel(ref_body, ref_root), axis=-1),
            ee=jnp.linalg.norm(rel(ee, root) - rel(ref_ee, ref_root), axis=-1),
            keypoint=jnp.linalg.norm(self.markers(phys, clip) - self.ref_kp[row], axis=-1) * self.kp_valid[row],
            keypoint_valid=self.kp_valid[row],
        )

    def reset_to(self, key, clip, frame) -> EnvState:
        """Start an episode at a given clip and frame, in the reference state."""
        row = self._rows(clip, frame)
        qpos, qvel = self.ref_qpos[row], self.ref_qvel[row]
        if self.noisy_starts is not None:
            q, xpos, xquat = self.noisy_starts
            i = jax.random.randint(key, (), 0, NOISY_STARTS_PER_FRAME)
            qpos = q[row, i]
            data = self.backend.init_posed(qpos, qvel, xpos[row, i], xquat[row, i])
        elif self.ref_poses is None:
            noise = jax.random.uniform(key, (len(self.hinge_q),), minval=-1.0, maxval=1.0) * self.cfg.reset_noise_rad
            qpos = qpos.at[self.hinge_q].add(noise)
            data = self.backend.init(qpos, qvel)
        else:
            xpos, xquat = self.ref_poses
            data = self.backend.init_posed(qpos, qvel, xpos[row], xquat[row])
        # The episode's physics; a key folded from the noise's, so runs without a draw are as before.
        draw = self.randomizer.draw(jax.random.fold_in(key, 1))
        draw = self.randomizer.record_start(draw, (qpos - self.ref_qpos[row])[self.hinge_q])
        prev_ctrl = jnp.zeros(self.nu)
        phys = self.backend.view(data)
        ref_obs, prop_obs = self._observe(phys, clip, frame, prev_ctrl)
        zero = jnp.zeros(())
        # The record's layout (zeros) is that of a step, so every state has the same pytree.
        err = jax.tree.map(jnp.zeros_like, self.errors(phys, clip, frame))
        terms = reward_terms(self.reward_cfg, StepQuantities(err, prev_ctrl, prev_ctrl, prev_ctrl), self.has_root)
        metrics = step_metrics(err, terms, zero, jnp.int32(0), zero, zero) | self.randomizer.summary(draw)
        metrics = jax.tree.map(jnp.zeros_like, metrics)
        return EnvState(
            data=data,
            clip=jnp.int32(clip),
            frame=jnp.int32(frame),
            steps=jnp.int32(0),
            prev_ctrl=prev_ctrl,
            ref_obs=ref_obs,
            prop_obs=prop_obs,
            reward=zero,
            terminated=zero,
            truncated=zero,
            metrics=metrics,
            key=key,
            randomize=draw,
        )

    @property
    def failure_table_shape(self) -> tuple[int, int]:
        """Shape of the termination memory ``reset`` draws from (``environments.starts``).

        (clips, frames of the longest clip with its padding): the layout checkpoints hold.
        """
        return self.bank.num_clips, int(np.max(self.bank.lengths)) + self.bank.pad

    def reset(self, key, failure_cdf=None) -> EnvState:
        """Start an episode at a random clip and start frame.

        ``failure_cdf`` (``starts.failure_cdf`` of the termination memory, the
        same for every environment): with ``env.failure_start_prob``, start
        shortly before a remembered termination instead.
        """
        cfg = self.cfg
        k_clip, k_frame, k_first, k_noise, k_next = jax.random.split(key, 5)
        frames = self.failure_table_shape[1]
        clip = draw_clip(k_clip, cfg.clip_weights, self.bank.num_clips, self.length_cdf, failure_cdf, frames)
        last_start = self.lengths[clip] - cfg.control_every  # leave at least one step
        frame = jax.random.randint(k_frame, (), 0, last_start)
        frame = jnp.where(jax.random.uniform(k_first) < cfg.first_frame_start_prob, 0, frame)
        if failure_cdf is not None and cfg.failure_start_prob > 0:
            # Keys folded from an existing one: runs without the memory draw exactly as before.
            k_use, k_at = jax.random.split(jax.random.fold_in(k_first, 1))
            known, f_clip, f_frame = sample_failure_start(
                k_at, failure_cdf, frames, cfg.failure_start_back_steps, cfg.control_every
            )
            use = known & (jax.random.uniform(k_use) < cfg.failure_start_prob)
            clip, frame = jnp.where(use, f_clip, clip), jnp.where(use, f_frame, frame)
        state = self.reset_to(k_noise, clip, frame)
        return state.replace(key=k_next)

    def step_no_reset(self, state: EnvState, action, xfrc=None) -> EnvState:
        """Advance one control step; the state is not reset when the episode ends.

        ``xfrc``: an external wrench on every body (nbody, 6), world frame, held
        for the step (virtual experiments; training applies none).
        """
        cfg = self.cfg
        before = self.backend.view(state.data)
        ctrl = self.action_to_ctrl(action, before.qpos)
        act = before.act
        if self.model.na:
            # A clip's first frame is usually mid-movement, so its actuators are
            # already active; their state is not in the reference. Start each
            # episode with activations equal to the first controls instead.
            act = jnp.where(state.steps == 0, ctrl[self._act_of_actuator], act)
        data = self.backend.step(state.data, ctrl, act, cfg.substeps, xfrc, params=physics_params(state.randomize))
        phys = self.backend.view(data)
        frame = state.frame + cfg.control_every
        clip = state.clip
        finite = jnp.all(jnp.isfinite(phys.qpos)) & jnp.all(jnp.isfinite(phys.qvel))
        err = self.errors(phys, clip, frame)
        power = phys.actuator_force * phys.actuator_velocity
        terms = reward_terms(self.reward_cfg, StepQuantities(err, ctrl, state.prev_ctrl, power), self.has_root)
        reward = sum(terms.values())
        terminated = self._lost(phys, err, clip, frame) | ~finite
        truncated = (frame + cfg.control_every >= self.lengths[clip]) & ~terminated
        ref_obs, prop_obs = self._observe(phys, clip, frame, ctrl)
        # A blown-up state must not poison training: report zeros, end the episode.
        sanitize = lambda x: jnp.where(finite, jnp.nan_to_num(x, posinf=0.0, neginf=0.0), 0.0)
        terminated, unstable = terminated.astype(jnp.float32), (~finite).astype(jnp.float32)
        # Each transition records its episode's draw (``randomize/*``, finite by construction).
        metrics = step_metrics(err, terms, reward, state.steps + 1, terminated, unstable)
        metrics |= self.randomizer.summary(state.randomize)
        metrics = {k: v if k.startswith(("episode/", "randomize/")) else sanitize(v) for k, v in metrics.items()}
        return state.replace(
            data=data,
            frame=frame,
            steps=state.steps + 1,
            prev_ctrl=ctrl,
            ref_obs=sanitize(ref_obs),
            prop_obs=sanitize(prop_obs),
            reward=sanitize(reward),
            terminated=terminated,
            truncated=truncated.astype(jnp.float32),
            metrics=metrics,
        )

    def _lost(self, phys, err: Errors, clip, frame):
        """Whether tracking is lost (terminations other than non-finite physics)."""
        t = self.term_cfg
        has_kp = jnp.sum(err.keypoint_valid) > 0
        kp_lost = has_kp & (masked_mean(err.keypoint, err.keypoint_valid) > t.max_keypoint_error_m)
        joints_lost = rms(err.joint) > t.max_joint_error_rad
        if t.joints_only_with_keypoints_lost:
            # An unobservable joint's deviation alone ends nothing while the measured keypoints are tracked.
            joints_lost = joints_lost & (~has_kp | kp_lost)
        lost = joints_lost | kp_lost | (jnp.mean(err.ee) > t.max_ee_error_m) | (jnp.mean(err.body) > t.max_body_error_m)
        if self.has_root:
            fallen = self.ref_qpos[self._rows(clip, frame), 2] - phys.qpos[2] > t.max_root_drop_m
            lost = lost | (err.root_pos > t.max_root_error_m) | (err.root_angle > t.max_root_angle_rad) | fallen
        return lost
