"""STAC: Simultaneous Tracking And Calibration of a body model to 3D keypoints.

Unknowns: every frame's pose ``qpos`` and one marker offset per keypoint (the
marker's position in the frame of the body it is attached to). The solver
alternates

1. a root alignment (free-root bodies only): a weighted Kabsch fit of the
   trunk markers, frame by frame, in closed form;
2. pose rounds: Levenberg-Marquardt on all frames at once (vmapped over
   frames, one jit-compiled loop), with marker residuals, a temporal
   smoothness term towards the mean of each frame's neighbours, a joint-speed
   prior and an optional prior towards the neutral pose; hinges are projected
   into their joint limits after every step;
3. offset rounds: with poses fixed, each offset is the solution of a small
   linear least-squares problem, regularised towards its initial value, in
   closed form.

Why Levenberg-Marquardt in JAX rather than a general least-squares library:
each frame's problem is small and, with the smoothness neighbours held at the
current iterate, independent of the others, so one batched normal-equation
solve per iteration handles every frame with exact forward-mode Jacobians of
MJX kinematics; SciPy would loop over frames in Python or build one huge
sparse problem with finite differences. The damping adapts per frame.

Temporal priors. Where the keypoints hardly see a joint (the mouse arm's
shoulder at its extension limit, where elevation and rotation turn about
nearly one axis as the elbow straightens), the fit would swing it by 90 deg in
a few frames to gain a fraction of a millimetre. The speed prior charges each
finite difference (q_t - q_t-1) * fps like a keypoint error
(``velocity_m_per_rad_s``, the same at any frame rate), multiplied where the
joint is poorly seen at that frame (``observable_lever_m``). An acceleration
prior was dropped: its 1, -4, 6, -4, 1 stencil makes the frame-by-frame
(Jacobi) sweep diverge at useful weights. Hinges are projected
``limit_margin_rad`` inside their limits: a reference on a limit makes the
simulated joint press on its limit constraint.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from mimic_mjx.errors import KeypointError
from mimic_mjx.quaternions import mat_to_quat
from mimic_mjx.registration.config import DEFAULT_STAC, PRIOR_REFERENCE_EXTENT_M, StacConfig
from mimic_mjx.registration.joints import inside_margin, project, registration_layout, retract

__all__ = ["DEFAULT_STAC", "PRIOR_REFERENCE_EXTENT_M", "StacConfig", "StacResult", "StacSolver"]


@dataclasses.dataclass
class StacResult:
    qpos: np.ndarray  # (T, nq)
    offsets: np.ndarray  # (K, 3) m
    markers: np.ndarray  # (T, K, 3) m, fitted marker positions
    residuals: np.ndarray  # (T, K) m, NaN where the keypoint is missing
    weights: np.ndarray  # (T, K)
    seconds: float


class StacSolver:
    """Fits one body (a compiled MjModel) to keypoints through a keypoint map."""

    def __init__(
        self,
        model: mujoco.MjModel,
        keypoint_bodies: list[str],
        initial_offsets: np.ndarray,
        trunk: list[int],
        cfg: StacConfig = DEFAULT_STAC,
        log: Callable[[str], None] = lambda m: None,
    ):
        self.model = model
        self.cfg = cfg
        self.log = log
        self.layout = inside_margin(registration_layout(model), cfg.limit_margin_rad)
        self.body_ids = np.array([model.body(b).id for b in keypoint_bodies])
        self.initial_offsets = np.asarray(initial_offsets, np.float64)
        self.trunk = np.asarray(trunk, int)
        # Only kinematics are evaluated: drop contacts, which MJX cannot build
        # for some geom pairs of the larger bodies (e.g. the rat's ellipsoids).
        kin_model = copy.deepcopy(model)
        kin_model.geom_contype[:] = 0
        kin_model.geom_conaffinity[:] = 0
        # This process's own device: MJX's default is jax.devices()[0], which under the multi-process
        # runtime belongs to process 0, and placing data there fails in every other process.
        device = jax.local_devices()[0]
        self.mx = mjx.put_model(kin_model, device=device)
        self._blank = mjx.make_data(self.mx, device=device)
        self.q_neutral = jnp.asarray(model.qpos0)
        # Per dof: its joint, whether it slides, and which bodies it moves.
        self._dof_joint = jnp.asarray(model.dof_jntid)
        self._dof_is_slide = jnp.asarray(model.jnt_type[model.dof_jntid] == int(mujoco.mjtJoint.mjJNT_SLIDE))
        ancestor = np.zeros((model.nbody, model.nv), np.float32)
        for b in range(model.nbody):
            a = b
            while a > 0:
                ancestor[b, model.dof_bodyid == a] = 1.0
                a = model.body_parentid[a]
        self._ancestor = jnp.asarray(ancestor)
        self._root_body = int(model.jnt_bodyid[0]) if self.layout.free_root else 0
        self._pose_round = jax.jit(self._pose_round_impl)
        self._kinematics = jax.jit(jax.vmap(self._body_frames))

    # -- model evaluation ---------------------------------------------------
    def _body_frames(self, q):
        d = mjx.kinematics(self.mx, self._blank.replace(qpos=q))
        return d.xpos, d.xmat, d.xquat

    def _markers(self, q, offsets):
        xpos, xmat, _ = self._body_frames(q)
        b = self.body_ids
        return xpos[b] + jnp.einsum("kij,kj->ki", xmat[b], offsets)

    # -- pose fitting -------------------------------------------------------
    def _markers_and_jacobian(self, q, offsets):
        """Marker positions (K, 3) and their exact Jacobian (K, 3, nv) from one kinematics pass.

        A hinge turns every marker below it about its axis through its anchor,
        so its column is axis x (marker - anchor); a slide moves them along its
        axis; the free root translates them and turns them about the root
        origin in the root's local frame (matching ``retract``). This
        avoids forward-mode differentiation through the kinematics, whose
        compiled program is tens of times larger for the rat.
        """
        d = mjx.kinematics(self.mx, self._blank.replace(qpos=q))
        b = self.body_ids
        m = d.xpos[b] + jnp.einsum("kij,kj->ki", d.xmat[b], offsets)
        jnt = self._dof_joint
        axis, anchor = d.xaxis[jnt], d.xanchor[jnt]  # (nv, 3)
        rot = jnp.cross(axis[None], m[:, None] - anchor[None])  # (K, nv, 3)
        cols = jnp.where(self._dof_is_slide[None, :, None], axis[None], rot)
        if self.layout.free_root:
            root_R = d.xmat[self._root_body]
            cols = cols.at[:, 0:3].set(jnp.broadcast_to(jnp.eye(3), (m.shape[0], 3, 3)))
            cols = cols.at[:, 3:6].set(jnp.cross(root_R.T[None], m[:, None] - d.xpos[self._root_body]))
        J = cols * self._ancestor[b][:, :, None]
        return m, jnp.swapaxes(J, 1, 2)

    def _temporal_dofs(self):
        """qpos columns, qvel columns and unit scales of the coordinates the temporal terms smooth.

        Hinges are in radians; a free root's position is put on the same
        footing with 1 cm counted like 1 rad (its orientation is not smoothed).
        """
        lay = self.layout
        qcols, dcols, scale = [lay.hinge_qpos], [lay.hinge_dof], [np.ones(len(lay.hinge_qpos))]
        if lay.free_root:
            qcols.append(np.arange(3))
            dcols.append(np.arange(3))
            scale.append(np.full(3, 1.0 / 0.01))
        return np.concatenate(qcols), np.concatenate(dcols), np.concatenate(scale)

    def _speed_boost(self, Jm):
        """Per frame and smoothed coordinate, the factor (>= 1) on the speed prior.

        A hinge's lever is 1 / sqrt((J^T J)^-1)_ii: how far the keypoints move
        per radian of it once every other joint has moved to compensate, i.e.
        how well the keypoints see it at this pose. It collapses at a
        singular pose (and is zero for a joint no keypoint depends on).
        """
        lay, ref = self.layout, self.cfg.observable_lever_m
        n = len(self._temporal_dofs()[0])
        if ref <= 0:
            return jnp.ones((Jm.shape[0], n))
        H = jnp.einsum("fri,frj->fij", Jm, Jm)
        # The floor caps the factor at 50 where a joint is not seen at all.
        cov = jnp.linalg.inv(H + (0.02 * ref) ** 2 * jnp.eye(lay.nv))
        lever = 1.0 / jnp.sqrt(jnp.diagonal(cov, axis1=1, axis2=2)[:, lay.hinge_dof])
        boost = jnp.maximum(1.0, ref / lever)
        rest = jnp.ones((Jm.shape[0], n - len(lay.hinge_dof)))  # root position: not boosted
        return jax.lax.stop_gradient(jnp.concatenate([boost, rest], axis=1))

    def _regulariser(self, q, nb, fps):
        """Smoothness, speed and neutral-pose residuals of one frame, with their (constant) Jacobians.

        ``nb``: the frame's neighbours at the current iterate, held fixed:
        ``q[t-1]``, ``q[t+1]`` (the frame's own iterate past an end), whether
        each exists (0/1), and the frame's own speed-prior factors, applied to
        both its differences. (One factor per difference failed both ways: the
        larger of its two frames' let a lone frame with missing keypoints
        stiffen its seen neighbours; the smaller left half the swings.)
        """
        lay, cfg = self.layout, self.cfg
        qm1, qp1, vm1, vp1, boost = nb
        c, d, sc = self._temporal_dofs()
        x, xm1, xp1 = (sc * a[c] for a in (q, qm1, qp1))
        rows, jac = [], []
        eye = jnp.eye(lay.nv)
        E = sc[:, None] * eye[d]  # d x / d step
        if cfg.smooth_m_per_rad > 0:
            rows.append(cfg.smooth_m_per_rad * (x - 0.5 * (xm1 + xp1)))
            jac.append(cfg.smooth_m_per_rad * E)
        if cfg.velocity_m_per_rad_s > 0:
            # The two finite differences this frame enters: (q_t - q_t-1) fps and (q_t+1 - q_t) fps.
            a = cfg.velocity_m_per_rad_s * fps * boost
            rows += [a * vm1 * (x - xm1), a * vp1 * (xp1 - x)]
            jac += [(a * vm1)[:, None] * E, -(a * vp1)[:, None] * E]
        if cfg.prior_m_per_rad > 0:
            h, hd = lay.hinge_qpos, lay.hinge_dof
            rows.append(cfg.prior_m_per_rad * (q[h] - self.q_neutral[h]))
            jac.append(cfg.prior_m_per_rad * eye[hd])
        if not rows:
            return jnp.zeros(0), jnp.zeros((0, lay.nv))
        return jnp.concatenate(rows), jnp.concatenate(jac)

    def _pose_round_impl(self, q, kp, sqrt_w, offsets, fps, q_before, has_before, n_valid):
        """Levenberg-Marquardt on every frame of one stretch at once.

        One kinematics pass per iteration: the candidate step is evaluated and
        kept only where it lowers the frame's cost (then the damping drops),
        otherwise the frame keeps its pose and cached Jacobian and the damping
        rises. Temporal neighbours follow the current iterate (a Jacobi sweep:
        each frame minimises its cost with its neighbours held).

        ``q_before``: the (already solved, held) pose before the first frame,
        a neighbour of frame 0 when ``has_before`` is 1, so that a chunk of a
        stream continues the chunk before it. Only the first ``n_valid``
        frames are linked in time: a short last chunk is padded to the
        compiled length with unweighted frames that do not pull on it.
        """
        lay = self.layout
        evaluate = jax.vmap(self._markers_and_jacobian, in_axes=(0, None))
        regular = jax.vmap(self._regulariser, in_axes=(0, 0, None))
        T = q.shape[0]
        idx = jnp.arange(T)
        prev, nxt = jnp.maximum(idx - 1, 0), jnp.minimum(idx + 1, T - 1)
        has_prev = ((idx > 0) | ((idx == 0) & (has_before > 0))).astype(q.dtype)[:, None]
        has_next = (idx < n_valid - 1).astype(q.dtype)[:, None]

        def neighbours(qs):
            # Past an end (no neighbour) a frame's own iterate stands in: its smoothness term then
            # pulls it towards its one neighbour only.
            qm1 = qs[prev].at[0].set(q_before)
            return jnp.where(has_prev > 0, qm1, qs), jnp.where(has_next > 0, qs[nxt], qs)

        def marker_terms(m, J):
            r = (sqrt_w[..., None] * (m - kp)).reshape(m.shape[0], -1)
            return r, (sqrt_w[..., None, None] * J).reshape(m.shape[0], -1, lay.nv)

        def total(rm, rr):
            return jnp.sum(rm**2, axis=1) + jnp.sum(rr**2, axis=1)

        m, J = evaluate(q, offsets)
        rm, Jm = marker_terms(m, J)

        def body(i, carry):
            q, rm, Jm, lam, boost = carry
            # The speed-prior factors follow the poses every few steps: their batched inverse
            # costs several LM steps for the rat; every step would double its registration time.
            boost = jax.lax.cond((i % 5 == 0) & (i > 0), self._speed_boost, lambda _: boost, Jm)
            qs = jax.lax.stop_gradient(q)
            nb = (*neighbours(qs), has_prev, has_next, boost)
            rr, Jr = regular(q, nb, fps)
            r = jnp.concatenate([rm, rr], axis=1)
            Jf = jnp.concatenate([Jm, Jr], axis=1)
            H = jnp.einsum("fri,frj->fij", Jf, Jf)
            g = jnp.einsum("fri,fr->fi", Jf, r)
            damp = lam[:, None, None] * (jnp.eye(lay.nv) * (jnp.diagonal(H, axis1=1, axis2=2)[:, None] + 1e-9))
            step = -jnp.linalg.solve(H + damp, g[..., None])[..., 0]
            qc = jax.vmap(lambda a, b: project(lay, retract(lay, a, b)))(q, step)
            mc, Jc = evaluate(qc, offsets)
            rmc, Jmc = marker_terms(mc, Jc)
            rrc, _ = regular(qc, nb, fps)
            better = jnp.isfinite(total(rmc, rrc)) & (total(rmc, rrc) < total(rm, rr))
            pick = lambda a, b: jnp.where(better.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
            return pick(qc, q), pick(rmc, rm), pick(Jmc, Jm), jnp.where(better, lam * 0.3, lam * 5.0), boost

        lam0 = jnp.full(q.shape[0], 1e-2)
        carry = (q, rm, Jm, lam0, self._speed_boost(Jm))
        q, rm, *_ = jax.lax.fori_loop(0, self.cfg.lm_iterations, body, carry)
        return q, jnp.sum(rm**2, axis=1)

    # -- closed-form parts --------------------------------------------------
    def align_root(self, kp: np.ndarray, w: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Initial poses: neutral joints, root placed by a weighted Kabsch fit of the trunk markers."""
        T = kp.shape[0]
        q = np.tile(self.model.qpos0, (T, 1))
        if not self.layout.free_root:
            return q
        ref = np.array(self.model.qpos0)
        ref[0:3], ref[3:7] = 0.0, (1.0, 0.0, 0.0, 0.0)
        # In the root frame; native MuJoCo: a chunked registration aligns every chunk, and one MJX
        # kinematics call outside jit costs seconds for the rat.
        data = mujoco.MjData(self.model)
        data.qpos[:] = ref
        mujoco.mj_kinematics(self.model, data)
        b = self.body_ids
        local = (data.xpos[b] + np.einsum("kij,kj->ki", data.xmat[b].reshape(-1, 3, 3), offsets))[self.trunk]
        P, W = kp[:, self.trunk], w[:, self.trunk]
        enough = (W > 0).sum(axis=1) >= 3
        if not enough.any():
            raise KeypointError("no frame has 3 or more trunk keypoints; the root cannot be aligned")
        wsum = W.sum(axis=1, keepdims=True) + 1e-12
        mu_p = (W[..., None] * np.nan_to_num(P)).sum(1) / wsum
        mu_l = (W[..., None] * local[None]).sum(1) / wsum
        C = np.einsum("tk,tki,tkj->tij", W, np.nan_to_num(P) - mu_p[:, None], local[None] - mu_l[:, None])
        U, _, Vt = np.linalg.svd(C)
        D = np.ones((T, 3))
        D[:, 2] = np.sign(np.linalg.det(U @ Vt))
        R = U @ (D[..., None] * Vt)
        t = mu_p - np.einsum("tij,tj->ti", R, mu_l)
        # Frames with too few trunk keypoints take the nearest good frame's root.
        good = np.nonzero(enough)[0]
        nearest = good[np.abs(np.arange(T)[:, None] - good[None]).argmin(axis=1)]
        q[:, 0:3] = t[nearest]
        q[:, 3:7] = mat_to_quat(R[nearest])
        return q

    def fit_offsets(self, q: np.ndarray, kp: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Per-keypoint least squares for the offsets, with the poses fixed."""
        xpos, xmat, _ = self._kinematics(jnp.asarray(q))
        xpos, xmat = np.asarray(xpos)[:, self.body_ids], np.asarray(xmat)[:, self.body_ids]
        local = np.einsum("tkji,tkj->tki", xmat, np.nan_to_num(kp) - xpos)  # keypoints in body frames
        lam = self.cfg.offset_reg * np.maximum(w.sum(axis=0), 1.0)
        num = (w[..., None] * local).sum(axis=0) + lam[:, None] * self.initial_offsets
        return num / (w.sum(axis=0) + lam)[:, None]

    # -- driver -------------------------------------------------------------
    def _solve_poses(self, q, kp, w, offsets, fps):
        sqrt_w = np.sqrt(w)
        out, costs = [], []
        B = self.cfg.batch_frames
        for s in range(0, q.shape[0], B):
            # Each batch after the first continues from the batch before's last pose (held).
            before = out[-1][-1] if out else q[0]
            n = min(B, q.shape[0] - s)
            qb, cb = self._pose_round(
                jnp.asarray(q[s : s + B]),
                jnp.asarray(np.nan_to_num(kp[s : s + B])),
                jnp.asarray(sqrt_w[s : s + B]),
                jnp.asarray(offsets),
                fps,
                jnp.asarray(before),
                jnp.float32(1.0 if out else 0.0),
                jnp.int32(n),
            )
            out.append(np.asarray(qb))
            costs.append(np.asarray(cb))
        return np.concatenate(out), np.concatenate(costs)

    def solve(self, kp: np.ndarray, weights: np.ndarray, fps: float | None = None) -> StacResult:
        """kp: (T, K, 3) metres, NaN where missing; weights: (T, K), 0 to ignore; fps: frame rate (Hz).

        Without a frame rate the speed and acceleration priors, which are in
        physical units, are left out.
        """
        t0 = time.perf_counter()
        fps = jnp.float32(fps if fps is not None else 0.0)
        w = np.where(np.isfinite(kp).all(axis=-1), weights, 0.0)
        offsets = self.initial_offsets.copy()
        q = self.align_root(kp, w, offsets)
        for r in range(self.cfg.rounds + 1):
            q, cost = self._solve_poses(q, kp, w, offsets, fps)
            med = self._median_residual(q, kp, w, offsets)
            self.log(
                f"pose round {r + 1}/{self.cfg.rounds + 1}: median keypoint residual {1e3 * med:.2f} mm "
                f"({time.perf_counter() - t0:.0f} s)"
            )
            if r < self.cfg.rounds:
                offsets = self.fit_offsets(q, kp, w)
        markers = self.markers_at(q, offsets)
        residuals = np.linalg.norm(markers - kp, axis=-1)
        residuals = np.where(w > 0, residuals, np.nan)
        return StacResult(
            qpos=q, offsets=offsets, markers=markers, residuals=residuals, weights=w, seconds=time.perf_counter() - t0
        )

    def markers_at(self, q: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Markers (T, K, 3) at poses q (T, nq), through the jitted kinematics (fit_offsets compiles it too)."""
        xpos, xmat, _ = self._kinematics(jnp.asarray(q))
        b = self.body_ids
        return np.asarray(xpos)[:, b] + np.einsum("tkij,kj->tki", np.asarray(xmat)[:, b], offsets)

    def _median_residual(self, q, kp, w, offsets) -> float:
        m = self.markers_at(q, offsets)
        d = np.linalg.norm(m - np.nan_to_num(kp), axis=-1)
        return float(np.median(d[w > 0]))

    def body_poses(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xpos, _, xquat = self._kinematics(jnp.asarray(q))
        return np.asarray(xpos), np.asarray(xquat)
