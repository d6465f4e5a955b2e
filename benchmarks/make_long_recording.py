"""Build an N-minute rat recording from the shared 1,000-frame one, for scale tests of registration.

The shared DANNCE recording (../shared/data/rodent/rat_dannce_1000f.mat, 20 s
at 50 Hz) is too short to test chunked, resumable registration of hours of
data. This script strings together the recording itself and then copies of
it, each one

- time-warped: resampled at a speed drawn from [0.8, 1.25] (linear
  interpolation between frames; the rat moves faster or slower);
- mirrored left/right on every other copy (drawn): reflected through the
  vertical plane along its own heading, with the L/R keypoint names swapped so
  that the reflection is again a plausible rat, not a rat with crossed legs;
- re-centred: turned about the vertical and moved so that its first frame's
  trunk sits where the previous copy's last frame left it, then cross-faded
  over 0.2 s so that the seams do not teleport the keypoints.

The same seed gives the same keypoints, value for value (the .mat header
records when it was written). The output is a DANNCE
``.mat`` (``pred`` (T, 3, K) millimetres, ``joint_names``), read by
``mimic register --keypoints OUT --fps 50``. It is written where the user says
and never belongs in the repository (the recording's licence travels with the
shared data, and long files bloat the repository).

    .venv/bin/python benchmarks/make_long_recording.py --minutes 60 --seed 0 --out /tmp/rat_60min.mat [--no-mirror]

``--no-mirror`` leaves the mirrored copies out: one rat's marker placement
throughout, as in a real recording, for comparing registration residuals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "rodent" / "rat_dannce_1000f.mat"
FPS = 50.0
TRUNK = ("SpineF", "SpineM", "SpineL")  # the heading is SpineL -> SpineF, the anchor their centroid
BLEND_S = 0.2


def mirror_partner(names: list[str]) -> np.ndarray:
    """Index of each keypoint's left/right counterpart (itself on the midline): ...L <-> ...R."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        twin = n[:-1] + {"L": "R", "R": "L"}[n[-1]] if n[-1] in "LR" else n
        out.append(index.get(twin, index[n]))
    return np.array(out)


def _heading(frame: np.ndarray, trunk: list[int]) -> float:
    d = frame[trunk[0]] - frame[trunk[-1]]
    return float(np.arctan2(d[1], d[0]))


def _rotate_z(x: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return x @ R.T


def time_warp(x: np.ndarray, speed: float) -> np.ndarray:
    """(T, K, 3) resampled as if played ``speed`` times faster (linear interpolation)."""
    t = np.arange(0.0, x.shape[0] - 1, speed)
    i = np.floor(t).astype(int)
    f = (t - i)[:, None, None]
    return (1 - f) * x[i] + f * x[np.minimum(i + 1, x.shape[0] - 1)]


def mirror(x: np.ndarray, names: list[str], trunk: list[int]) -> np.ndarray:
    """Reflect through the vertical plane along the first frame's heading and swap L/R keypoints."""
    angle = _heading(x[0], trunk)
    centre = x[0, trunk].mean(axis=0)
    local = _rotate_z(x - centre, -angle)
    local[..., 1] *= -1.0
    return (_rotate_z(local, angle) + centre)[:, mirror_partner(names)]


def place(x: np.ndarray, after: np.ndarray, trunk: list[int]) -> np.ndarray:
    """Turn and move ``x`` so that its first frame's trunk matches ``after`` (one frame) in heading and xy."""
    turn = _heading(after, trunk) - _heading(x[0], trunk)
    c0 = x[0, trunk].mean(axis=0)
    moved = _rotate_z(x - c0 * [1, 1, 0], turn)
    return moved + after[trunk].mean(axis=0) * [1, 1, 0]


def build(source: np.ndarray, names: list[str], frames: int, seed: int, mirror_share: float = 0.5) -> np.ndarray:
    """``frames`` frames (T, K, 3) strung from warped, mirrored, re-centred copies of ``source``.

    ``mirror_share``: the chance that a copy is mirrored. A mirrored copy is a
    rat whose markers sit mirror-wise, so one set of marker offsets cannot fit
    both kinds of copy; 0 gives one rat's recording throughout.
    """
    rng = np.random.default_rng(seed)
    trunk = [names.index(n) for n in TRUNK]
    blend = int(round(BLEND_S * FPS))
    pieces: list[np.ndarray] = []
    total = 0
    while total < frames:
        if pieces:
            x = time_warp(source, float(rng.uniform(0.8, 1.25)))
            if rng.random() < mirror_share:
                x = mirror(x, names, trunk)
        else:  # the recording itself first: a registration of it compares with one of the source
            x = source.copy()
        if pieces:
            last = pieces[-1][-1]
            x = place(x, last, trunk)
            # Cross-fade from the previous copy's last pose over `blend` frames.
            a = np.linspace(0.0, 1.0, blend + 2)[1:-1, None, None]
            x[:blend] = (1 - a) * last + a * x[:blend]
        pieces.append(x)
        total += x.shape[0]
    return np.concatenate(pieces)[:frames]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, required=True, help="length of the recording (50 Hz)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the .mat file to write (outside the repository)")
    ap.add_argument("--source", default=str(SOURCE), help="the DANNCE recording to copy (default: the shared rat)")
    ap.add_argument(
        "--no-mirror", action="store_true", help="no mirrored copies: one rat's marker placement throughout"
    )
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if out.is_relative_to(ROOT):
        print(f"{out} is inside the repository; write long recordings elsewhere (e.g. /tmp)", file=sys.stderr)
        return 2
    if not args.minutes > 0:
        print(f"--minutes must be positive, got {args.minutes}", file=sys.stderr)
        return 2
    import scipy.io

    from mimic_mjx.data.keypoints import read_keypoints

    kp = read_keypoints(args.source, fps=FPS, units="mm")
    frames = int(round(args.minutes * 60 * FPS))
    x = build(
        kp.positions * 1e3, list(kp.names), frames, args.seed, 0.0 if args.no_mirror else 0.5
    )  # back to the file's millimetres
    pred = np.ascontiguousarray(x.transpose(0, 2, 1))  # DANNCE's (frames, 3, K)
    names = np.array(kp.names, dtype=object)
    scipy.io.savemat(out, {"pred": pred, "joint_names": names}, do_compression=False)
    print(f"wrote {frames} frames ({args.minutes:g} min at {FPS:g} Hz) of {len(names)} keypoints to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
