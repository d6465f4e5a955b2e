"""Chunks of a streamed registration put together: one clip per segment, and the residual summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mimic_mjx.bodies.layout import JointLayout, reference_velocities
from mimic_mjx.data.clips import Clip, read_clips


def clip_stem(source: str) -> str:
    return source.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "registered"


class SegmentClips(Sequence[Clip]):
    """The clips of a streamed registration, put together from its chunk files when asked for.

    One clip per gap-free segment, or, with ``clip_length``, consecutive clips
    of that many frames cut from each segment (a shorter tail is dropped).
    Only one segment is in memory at a time, so an hours-long recording is
    written and summarised without holding it whole (``write_clips`` makes two
    passes over a sequence like this one).
    """

    def __init__(
        self,
        chunk_files: list[list[Path]],
        frames: list[int],
        layout: JointLayout,
        fps: float,
        stem: str,
        clip_length: int | None = None,
    ):
        self.chunk_files, self.layout, self.fps = chunk_files, layout, fps
        many = len(chunk_files) > 1
        self.items: list[tuple[int, slice, str]] = []  # (segment, frames, name)
        for s, n in enumerate(frames):
            name = f"{stem}-seg{s:02d}" if many else stem
            if clip_length is None:
                self.items.append((s, slice(0, n), name))
                continue
            for i, a in enumerate(range(0, n - clip_length + 1, clip_length)):
                self.items.append((s, slice(a, a + clip_length), f"{name}-{i:04d}"))
        self._cached: tuple[int, Clip] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s, sl, name = self.items[i]
        return self.segment(s).frames(sl, name)

    def segment(self, s: int) -> Clip:
        """Segment ``s`` whole; velocities are taken again over it (no border at chunk joins)."""
        if self._cached is not None and self._cached[0] == s:
            return self._cached[1]
        self._cached = None  # the previous segment is let go before the next is read
        mine = [read_clips(f)[0] for f in self.chunk_files[s]]
        cat = lambda key: np.concatenate([getattr(p, key) for p in mine])
        qpos = cat("qpos")
        clip = dataclasses.replace(
            mine[0],
            qpos=qpos,
            qvel=reference_velocities(qpos.astype(np.float64), self.fps, self.layout).astype(np.float32),
            xpos=cat("xpos"),
            xquat=cat("xquat"),
            keypoints=cat("keypoints"),
            keypoint_residuals=cat("keypoint_residuals"),
        ).validate()
        self._cached = (s, clip)
        return clip


def summarise(clips: SegmentClips, prepared, chunks: int) -> dict:
    """The figures `register` reports, over every segment of a streamed registration (read one at a time)."""
    lay = JointLayout.from_model(prepared.model)
    res, violations, frames = [], 0, 0
    for c in (clips.segment(s) for s in range(len(clips.chunk_files))):  # one segment in memory at a time
        # Residuals in float32: 4 bytes a keypoint and frame, 17 MB for an hour of 23 keypoints at 50 Hz.
        res.append(1e3 * c.keypoint_residuals.astype(np.float32))
        qh = c.qpos[:, lay.hinge_qpos]
        # The layout of the model, without registration's margin: a violation is outside the real limits.
        violations += int(((qh < lay.lo - 1e-6) | (qh > lay.hi + 1e-6)).sum())
        frames += c.num_frames
    res_mm = np.concatenate(res)
    names = list(prepared.names)
    col = lambda i, f: float(f(res_mm[:, i])) if np.isfinite(res_mm[:, i]).any() else float("nan")
    return {
        "body": prepared.body.name,
        "frames": frames,
        "segments": len(clips.chunk_files),
        "chunks": chunks,
        "keypoints": names,
        "fps": float(clips.fps),
        "median_residual_mm": float(np.nanmedian(res_mm)),
        "p95_residual_mm": float(np.nanpercentile(res_mm, 95)),
        "per_keypoint_median_mm": {n: col(i, np.nanmedian) for i, n in enumerate(names)},
        "per_keypoint_p95_mm": {n: col(i, lambda x: np.nanpercentile(x, 95)) for i, n in enumerate(names)},
        "joint_limit_violations": violations,
        "body_scale": 1.0,
    }
