"""Where episodes start: a memory of recent terminations, as pure functions of arrays.

Most episodes start at a clip's first frame or at a uniformly drawn frame
(``ImitationEnv.reset``). With ``env.failure_start_prob`` > 0 a share of them
starts shortly before a place where the current policy recently lost
tracking, so the rare hard moments of the training clips (a shoulder held at
the end of its range mid-reach, an onset) are practised as often as they are
failed, not as often as they occur. The memory is a table of decayed
termination counts per (clip, frame), kept in the training state (checkpointed,
so a resumed run draws the same starts).

Also here: the body poses of every start state, computed on the host when the
task is built, so a reset inside the compiled step needs no host call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.config.schema import CLIP_WEIGHTS
from mimic_mjx.data.binding import ReferenceBank, reference_poses

#: Per update, old terminations count this much less (half-life ~34 updates,
#: ~0.2 M environment steps with the forelimb's 256 x 20 batch): the memory
#: follows the policy as it learns, yet holds enough events to draw from.
FAILURE_DECAY = 0.98


def empty_failures(num_clips: int, frames: int) -> jax.Array:
    """A termination memory with nothing in it: (clips, frames) float32."""
    return jnp.zeros((num_clips, frames), jnp.float32)


def record_failures(table, clip, frame, terminated, decay: float = FAILURE_DECAY):
    """Decay ``table`` and add the terminations of one rollout.

    clip, frame: int arrays (any shape) of the reference frame each transition
    ended on; terminated: float 0/1 of the same shape. Frames outside the
    table (cannot happen for valid states) are dropped, not wrapped.
    """
    n, t = table.shape
    ok = (clip >= 0) & (clip < n) & (frame >= 0) & (frame < t)
    idx = jnp.where(ok, clip * t + frame, 0).ravel()
    counts = jax.ops.segment_sum((terminated * ok).ravel(), idx, num_segments=n * t)
    return decay * table + counts.reshape(n, t)


def hardest_frames(table, clip_names, n: int = 5) -> list[dict]:
    """The ``n`` (clip, frame) cells with the most remembered terminations, most first (zero cells left out).

    For the run's summary: where the controller was losing tracking at the end
    of training, in the clips' own frame numbers.
    """
    t = np.asarray(table, float)
    if t.ndim != 2 or t.size == 0:
        return []
    flat = t.ravel()
    order = np.argsort(-flat, kind="stable")[:n]
    return [
        {"clip": clip_names[i // t.shape[1]], "frame": int(i % t.shape[1]), "weight": round(float(flat[i]), 3)}
        for i in order
        if flat[i] > 0
    ]


def failure_cdf(table) -> jax.Array:
    """Cumulative termination mass over the flattened table (computed once per rollout, shared by all environments)."""
    return jnp.cumsum(table.ravel())


def sample_failure_start(key, cdf, frames: int, back_max: int, step: int = 1):
    """(has_failures, clip, frame): a start ``step`` to ``back_max * step`` frames before a remembered termination.

    Drawn in proportion to the memory by inverse CDF (a binary search, not a
    categorical over every frame per environment). ``frames``: the table's
    frames per clip; ``step``: clip frames per control step.
    """
    k_at, k_back = jax.random.split(key)
    total = cdf[-1]
    idx = jnp.searchsorted(cdf, jax.random.uniform(k_at) * total, side="right")
    idx = jnp.minimum(idx, cdf.shape[0] - 1)
    clip, end = idx // frames, idx % frames
    back = jax.random.randint(k_back, (), 1, back_max + 1) * step
    return total > 0, clip.astype(jnp.int32), jnp.maximum(end - back, 0).astype(jnp.int32)


#: With ``env.clip_weights: failure``, the share of episodes whose clip is drawn
#: in proportion to its remembered terminations; the rest draw uniformly, so a
#: clip the policy tracks is still practised (and its failures noticed).
FAILURE_CLIP_SHARE = 0.5


def start_frame_cdf(lengths, control_every: int) -> np.ndarray:
    """Cumulative count of each clip's start frames (those ``reset`` draws from): weights ``length``."""
    return np.cumsum(np.maximum(np.asarray(lengths, np.int64) - control_every, 1)).astype(np.float32)


def draw_clip(key, weights: str, num_clips: int, length_cdf=None, failure_cdf=None, frames: int = 0):
    """The clip an episode starts in, by ``env.clip_weights``.

    ``uniform``: every clip alike (``randint``, the draws of runs before weights
    existed). ``length``: in proportion to its start frames (``length_cdf`` from
    ``start_frame_cdf``), so start frames are uniform over all clips' frames.
    ``failure``: ``FAILURE_CLIP_SHARE`` in proportion to the clip's remembered
    terminations (``failure_cdf`` over the (clips, ``frames``) memory), the rest
    uniform; uniform while the memory is empty or not kept.
    """
    if weights == "uniform":
        return jax.random.randint(key, (), 0, num_clips)
    if weights == "length":
        cum = jnp.asarray(length_cdf)
    elif weights == "failure":
        share = jnp.arange(1, num_clips + 1, dtype=jnp.float32) / num_clips
        if failure_cdf is None:
            cum = share
        else:
            per_clip = failure_cdf[frames - 1 :: frames]  # cumulative terminations at each clip's end
            total = per_clip[-1]
            mixed = (1 - FAILURE_CLIP_SHARE) * share + FAILURE_CLIP_SHARE * per_clip / jnp.maximum(total, 1e-30)
            cum = jnp.where(total > 0, mixed, share)
    else:
        raise ValueError(f"env.clip_weights must be one of {', '.join(CLIP_WEIGHTS)}, got '{weights}'")
    idx = jnp.searchsorted(cum, jax.random.uniform(key) * cum[-1], side="right")
    return jnp.minimum(idx, num_clips - 1).astype(jnp.int32)


# Noisy starts drawn in advance per reference frame, posed once on the host: a
# reset then costs no host call (it is computed for every environment at every
# step), where posing fresh noise took a second callback per control step
# (~35% of the forelimb's environment step).
NOISY_STARTS_PER_FRAME = 16
NOISY_STARTS_MAX_BYTES = 256 * 2**20


def noisy_starts(bank: ReferenceBank, model: mujoco.MjModel, hinge_q, noise_rad: float, seed: int = 0):
    """Every bank frame (F, ...) with uniform noise on the hinge angles, and their poses; None when too large to hold.

    Clip i's noise is drawn at the place of the random stream where the
    (clips, longest clip + pad) layout of earlier releases drew it, so a bank
    gets the noisy starts it got then.
    """
    k = NOISY_STARTS_PER_FRAME
    if len(bank.qpos) * k * (model.nq + 7 * model.nbody) * 4 > NOISY_STARTS_MAX_BYTES:
        return None
    qpos = np.repeat(bank.qpos[:, None, :], k, axis=1).astype(np.float32)
    per_frame = k * len(hinge_q)  # draws per frame
    longest = int(np.max(bank.lengths)) + bank.pad
    for i, (s, n) in enumerate(zip(bank.starts, bank.lengths + bank.pad, strict=True)):
        stream = np.random.PCG64(seed)  # np.random.default_rng(seed)'s, advanced to clip i's row
        stream.advance(i * longest * per_frame)
        noise = np.random.Generator(stream).uniform(-noise_rad, noise_rad, (n, k, len(hinge_q)))
        qpos[s : s + n, :, hinge_q] += noise.astype(np.float32)
    return (qpos, *reference_poses(model, qpos))


def bank_poses(bank: ReferenceBank, model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """The bank's body poses of every frame, as ``model`` poses the bodies.

    A bank bound with another model (or without poses) gets them recomputed;
    each clip's first and last (padding) frames are checked to the bit.
    """
    if bank.xpos is not None and bank.xpos.shape[1] == model.nbody:
        ends = np.concatenate([bank.starts, bank.starts + bank.lengths + bank.pad - 1])
        xpos, xquat = reference_poses(model, bank.qpos[ends])
        if np.array_equal(xpos, bank.xpos[ends]) and np.array_equal(xquat, bank.xquat[ends]):
            return bank.xpos, bank.xquat
    return reference_poses(model, bank.qpos)
