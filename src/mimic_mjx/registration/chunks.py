"""The bookkeeping of chunked registration: gaps, the chunk plan, settings, and the parts folder on disk.

A streamed registration of ``out.h5`` keeps its progress in ``out.h5.parts/``:

- ``manifest.json``: the settings (and their hash) the registration started
  with, the fitted marker offsets, the segments and the chunk plan;
- one clip file per finished chunk, ``chunk-SSS-FFFFFFFFF-LLLLLLLLL.h5``
  (segment, first frame, end frame), each written atomically (built in memory,
  renamed into place), so a kill or a full disk never leaves a half-written
  chunk and every finished chunk reads back on its own (``read_clips``).

The chunk files themselves are the list of finished chunks: what exists is
done, whichever process or device wrote it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from mimic_mjx.errors import KeypointError, OutputError
from mimic_mjx.files import read_text, write_text

MANIFEST = "manifest.json"
_CHUNK_RE = re.compile(r"^chunk-(\d{3})-(\d{9})-(\d{9})\.h5$")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    chunk_frames: int = 1000  # frames per chunk (each chunk is solved and written on its own)
    # Frames solved past each end of a chunk and dropped: the frames near a chunk's end see
    # neighbours as they would in one piece. 25 = the Levenberg-Marquardt steps over which a
    # Jacobi sweep carries a frame's influence 25 frames away.
    overlap_frames: int = 25
    # Levenberg-Marquardt steps per chunk, offsets held. On the rat (1000 frames, offsets from the
    # full solve) one round from the root alignment reaches a median residual of 1.76 mm after 10
    # steps, 1.53 after 25, 1.47 after 50; the full 4 x 25-step solve 1.51 (docs/registration.md).
    chunk_iterations: int = 30
    # Frames the marker offsets are fitted on (all, when fewer). Frames outside the sample are fitted
    # with offsets they did not shape: on a 9,000-frame rat recording the median residual over frames
    # mostly outside it was 1.71 mm with 1,000 sampled frames and 1.54 with 3,000 (1.51 in sample).
    calibration_frames: int = 3000
    calibration_block: int = 100  # ... drawn as this many consecutive frames at a time, spread over the recording
    gap_s: float = 1.0  # all keypoints missing for longer than this splits the recording


DEFAULT_STREAM = StreamConfig()  # a shared default argument (the config is frozen)


@dataclasses.dataclass(frozen=True)
class Chunk:
    segment: int
    start: int  # first frame (of the whole recording)
    end: int  # one past the last frame
    seg_start: int
    seg_end: int

    @property
    def filename(self) -> str:
        return f"chunk-{self.segment:03d}-{self.start:09d}-{self.end:09d}.h5"


def find_segments(empty: np.ndarray, fps: float, gap_s: float) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split frames at runs of ``empty`` (no keypoint) frames longer than ``gap_s`` seconds.

    Returns the segments (start, end) and the gaps (start, end) that split
    them. Empty runs at the ends are trimmed; shorter runs stay (the
    smoothness term fills them in). Segments of fewer than 2 frames are dropped.
    """
    longest = gap_s * fps
    T = len(empty)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], empty.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    gaps = [(int(a), int(b)) for a, b in runs if b - a > longest or a == 0 or b == T]
    segments, cursor = [], 0
    for a, b in gaps:
        if a - cursor >= 2:
            segments.append((cursor, a))
        cursor = b
    if T - cursor >= 2:
        segments.append((cursor, T))
    if not segments:
        raise KeypointError("no stretch of 2 or more frames has any keypoint; nothing to register")
    inner = [(a, b) for a, b in gaps if b - a > longest]
    return segments, inner


def plan_chunks(segments: list[tuple[int, int]], chunk_frames: int) -> list[Chunk]:
    """Each segment cut into near-equal chunks of at most ``chunk_frames`` (so none is under 2 frames)."""
    out = []
    for i, (a, b) in enumerate(segments):
        n = -(-(b - a) // chunk_frames)
        cuts = np.linspace(a, b, n + 1).round().astype(int)
        out += [Chunk(i, int(s), int(e), a, b) for s, e in zip(cuts[:-1], cuts[1:], strict=True)]
    return out


def calibration_windows(segments: list[tuple[int, int]], frames: int, block: int) -> list[tuple[int, int]]:
    """Stretches of consecutive frames, ``frames`` in all, spread evenly over the segments.

    Whole segments when they hold no more than ``frames``; otherwise blocks of
    ``block`` frames at evenly spaced places (a block never crosses a gap).
    """
    total = sum(b - a for a, b in segments)
    if total <= frames:
        return [(a, a + min(block, b - a)) for s0, b in segments for a in range(s0, b, block) if b - a >= 2]
    starts = [s for a, b in segments for s in range(a, b - block + 1)] or [a for a, _ in segments]
    n = max(1, frames // block)
    pick = np.unique(np.linspace(0, len(starts) - 1, n).round().astype(int))
    ends = {s: e for a, e in segments for s in range(a, e)}
    return [(starts[i], min(starts[i] + block, ends[starts[i]])) for i in pick]


def data_digest(positions: np.ndarray, weights: np.ndarray) -> str:
    """A hash of the keypoints and their weights: a resume must continue the same recording."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(positions, np.float64).tobytes())
    h.update(np.ascontiguousarray(weights, np.float64).tobytes())
    return h.hexdigest()


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def differing(old: dict, new: dict) -> list[str]:
    """'name: old -> new' for every setting that differs (hashes shortened)."""
    short = lambda v: v[:12] if isinstance(v, str) and len(v) == 64 else v
    return [
        f"{k}: {short(old.get(k))} -> {short(new.get(k))}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


class PartsFolder:
    """``<out>.parts/``: the manifest and the finished chunks of one streamed registration."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".parts")

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> dict:
        text = read_text(self.manifest_path, OutputError, "registration manifest")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputError(
                f"{self.manifest_path}: not a registration manifest ({exc.msg}); delete its folder"
            ) from None

    def write_manifest(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True))

    def finished(self) -> set[tuple[int, int, int]]:
        """(segment, start, end) of every chunk file present (complete: chunk files appear by rename)."""
        if not self.path.is_dir():
            return set()
        out = set()
        for p in self.path.iterdir():
            m = _CHUNK_RE.match(p.name)
            if m:
                out.add(tuple(int(g) for g in m.groups()))
        return out

    def chunk_path(self, chunk: Chunk) -> Path:
        return self.path / chunk.filename


def describe_ranges(chunks: list[Chunk], fps: float) -> str:
    """'frames 0-3000 (0.0-60.0 s), 5000-6000 (...)': consecutive chunks merged."""
    spans: list[list[int]] = []
    for c in sorted(chunks, key=lambda c: c.start):
        if spans and spans[-1][1] == c.start:
            spans[-1][1] = c.end
        else:
            spans.append([c.start, c.end])
    return ", ".join(f"{a}-{b} ({a / fps:.1f}-{b / fps:.1f} s)" for a, b in spans)


def check_clip_length(segments, clip_length: int | None, fps: float, log) -> None:
    """Before any work: ``clip_length`` must fit at least one segment; shorter segments are said."""
    if clip_length is None:
        return
    if clip_length < 2:
        raise KeypointError(f"clip length must be at least 2 frames, got {clip_length}")
    short = [(a, b) for a, b in segments if b - a < clip_length]
    if len(short) == len(segments):
        raise KeypointError(
            f"no stretch of the recording without gaps holds one clip of {clip_length} frames (the longest has "
            f"{max(b - a for a, b in segments)}); pass a shorter --clip-length"
        )
    for a, b in short:
        log(f"frames {a}-{b} ({(b - a) / fps:.2f} s) are shorter than one clip of {clip_length} frames: left out")
