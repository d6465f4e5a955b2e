"""Reference clips of C. elegans undulation: crawling on agar and swimming in water (the ``worm`` bodies).

The worm's centreline carries a curvature wave travelling from head to tail,

    kappa(s, t) = A / L * sin(2 pi (s / lambda - f t)),

s the arc length from the head, L the body length, A the curvature amplitude
per body length (``amplitude``), lambda the wavelength along the body
(``wavelength_bl`` x L) and f the frequency (``frequency_hz``).

* Crawling (``mode="crawl"``, body ``worm``): the body follows its own track.
  The track is the curve whose curvature is that wave in its own arc length;
  the head runs along it at the wave speed lambda f and every point of the
  body passes the same places, minus a slip: the whole track slides backwards
  at ``CRAWL_SLIP`` x lambda f, so the worm advances at about
  lambda f (1 - slip) along the body (less in space: the track is wavy).
* Swimming (``mode="swim"``, body ``worm_liquid``): C-shaped thrashing (a
  wavelength longer than the body); the body's mean tangent direction stays
  fixed (no net rotation) and its centroid drifts slowly forward at
  ``SWIM_DRIFT`` x lambda f.

Rigid segments: the 25 segment ends (head tip, 23 hinges, tail tip) are put
on the curve, each one segment length (chord) from the last, so they lie
exactly on it; segment midpoints lie within the sagitta (< 3 um at the
largest curvature) of it. Hinge angles follow from the segments' directions:
``dvKK`` = the turn from segment k to k+1 (positive towards dorsal, the
worm's +y), ``latKK`` = 0 (in the plane of the agar); the root (``seg01``,
origin at the head tip) from the head's position and direction.

Ranges (``check_parameter`` refuses values outside the physiological ones):

* Frequency: 1.76 Hz in water down to 0.30 Hz on agar, wavelength 1.54 L in
  water down to 0.65 L on agar (Fang-Yen et al. 2010, PNAS, "Biomechanical
  analysis of gait adaptation in the nematode C. elegans"); crawling 0.1-1.0 Hz and
  0.4-1.0 L, swimming 0.5-3.0 Hz and 1.0-2.0 L cover the spread reported across
  animals and conditions (Pierce-Shimomura et al. 2008, PNAS; Berri et al.
  2009, HFSP J).
* Curvature amplitude (per body length): crawling 3-12, swimming 2-8; the
  worm's body bends to kappa L ~ 5-10 in both gaits (Fang-Yen et al. 2010;
  Stephens et al. 2008 for the largest, ~20, in omega turns, beyond these ranges).
* When a parameter is None it is drawn per clip, uniformly from a narrower
  TRAINING range; :data:`HELDOUT` lists parameter sets outside the training
  ranges but inside the physiological ones (for generalisation tests).

``CRAWL_SLIP`` (0.15) and ``SWIM_DRIFT`` (0.1) are chosen: crawling worms
advance at most of their wave speed on agar, swimming ones at about a tenth
(a few tenths of a mm/s against a wave speed of ~2.7 mm/s).
"""

from __future__ import annotations

import math

import numpy as np

from mimic_mjx.bodies import worm_anatomy as A
from mimic_mjx.data.clips import Clip
from mimic_mjx.data.generated import check_parameter, clip_from_qpos
from mimic_mjx.errors import ClipError

MODES = ("crawl", "swim")
BODIES = {"crawl": "worm", "swim": "worm_liquid"}
SOURCE = "Fang-Yen et al. 2010 PNAS; Pierce-Shimomura et al. 2008 PNAS; Berri et al. 2009 HFSP J"
#: Physiological ranges: (frequency Hz, wavelength in body lengths, curvature amplitude per body length).
PHYSIOLOGICAL = {
    "crawl": {"frequency_hz": (0.1, 1.0), "wavelength_bl": (0.4, 1.0), "amplitude": (3.0, 12.0)},
    "swim": {"frequency_hz": (0.5, 3.0), "wavelength_bl": (1.0, 2.0), "amplitude": (2.0, 8.0)},
}
UNITS = {"frequency_hz": "Hz", "wavelength_bl": "body lengths", "amplitude": "per body length"}
#: Where parameters left as None are drawn from (uniformly), around Fang-Yen et al. 2010's means.
TRAINING = {
    "crawl": {"frequency_hz": (0.25, 0.5), "wavelength_bl": (0.6, 0.75), "amplitude": (6.0, 9.0)},
    "swim": {"frequency_hz": (1.5, 2.0), "wavelength_bl": (1.4, 1.7), "amplitude": (4.0, 7.0)},
}
#: Held-out parameter sets: outside TRAINING, inside PHYSIOLOGICAL.
HELDOUT = {
    "crawl": [
        {"frequency_hz": 0.15, "wavelength_bl": 0.5, "amplitude": 7.5},
        {"frequency_hz": 0.8, "wavelength_bl": 0.9, "amplitude": 7.5},
    ],
    "swim": [
        {"frequency_hz": 0.8, "wavelength_bl": 1.2, "amplitude": 5.5},
        {"frequency_hz": 2.6, "wavelength_bl": 1.9, "amplitude": 5.5},
    ],
}
CRAWL_SLIP = 0.15
SWIM_DRIFT = 0.1
_GRID = 40  # curve samples per segment length


def _parameter(mode: str, key: str, value, rng: np.random.Generator) -> float:
    if value is None:
        lo, hi = TRAINING[mode][key]
        return float(rng.uniform(lo, hi))
    lo, hi = PHYSIOLOGICAL[mode][key]
    return check_parameter(f"{mode} {key}", value, lo, hi, UNITS[key], SOURCE)


def _chain(points: np.ndarray) -> np.ndarray:
    """(T, 25, 2) segment ends along the dense polylines ``points`` (T, N, 2), one segment length apart."""
    seg_len = A.segment_length()
    T = points.shape[0]
    ends = np.empty((T, A.SEGMENTS + 1, 2))
    ends[:, 0] = points[:, 0]
    start = np.zeros(T, int)
    rows = np.arange(T)
    for j in range(1, A.SEGMENTS + 1):
        dist = np.linalg.norm(points - ends[:, j - 1][:, None, :], axis=2)
        idx = np.arange(points.shape[1])[None, :]
        beyond = (dist >= seg_len) & (idx > start[:, None])
        if not beyond.any(axis=1).all():
            raise ClipError("the worm's centreline is too short for its segments (internal error)")
        i = np.argmax(beyond, axis=1)
        d0, d1 = dist[rows, i - 1], dist[rows, i]
        w = ((seg_len - d0) / np.maximum(d1 - d0, 1e-30))[:, None]
        ends[:, j] = points[rows, i - 1] + w * (points[rows, i] - points[rows, i - 1])
        start = i - 1
    return ends


def centreline(mode: str, t: np.ndarray, f: float, lam_bl: float, amp: float, heading: float) -> np.ndarray:
    """(T, 25, 2) positions (m) of the segment ends (head tip first) at times ``t``; the clip starts at the origin."""
    L, seg_len = A.LENGTH_M, A.segment_length()
    lam = lam_bl * L
    k, omega, wave_speed = 2 * math.pi / lam, 2 * math.pi * f, lam * f
    u = np.arange(0.0, 1.1 * L, seg_len / _GRID)  # arc length from the head, past the tail (chords are shorter)
    direction = np.array([math.cos(heading), math.sin(heading)])
    if mode == "crawl":
        # The track: sigma is its arc length; the head sits at sigma_h = v t, body point s at sigma_h - s.
        sigma = np.arange(-1.2 * L, wave_speed * t[-1] + seg_len, seg_len / _GRID)
        theta = heading - (amp / L) / k * np.cos(k * sigma)
        dx = np.cos(theta) * (seg_len / _GRID)
        dy = np.sin(theta) * (seg_len / _GRID)
        track = np.stack([np.cumsum(dx), np.cumsum(dy)], axis=1)
        at = wave_speed * t[:, None] - u[None, :]
        pts = np.stack([np.interp(at, sigma, track[:, 0]), np.interp(at, sigma, track[:, 1])], axis=2)
        pts -= pts[:1, :1]  # the first frame's head tip at the origin
        pts -= (CRAWL_SLIP * wave_speed * t)[:, None, None] * direction
        return _chain(pts)
    # Swimming: the shape in the head's frame, then turned so its mean tangent keeps the heading.
    theta = -(amp / L) / k * np.cos(k * u[None, :] - omega * t[:, None])
    theta -= theta[:, :1]
    rear = np.stack([-np.cos(theta), -np.sin(theta)], axis=2) * (seg_len / _GRID)  # head -> tail
    pts = np.concatenate([np.zeros((len(t), 1, 2)), np.cumsum(rear, axis=1)[:, :-1]], axis=1)
    body = u <= L
    mean_tangent = np.arctan2(np.mean(np.sin(theta[:, body]), 1), np.mean(np.cos(theta[:, body]), 1))
    turn = heading - mean_tangent
    c, s = np.cos(turn)[:, None], np.sin(turn)[:, None]
    pts = np.stack([c * pts[..., 0] - s * pts[..., 1], s * pts[..., 0] + c * pts[..., 1]], axis=2)
    ends = _chain(pts)
    centroid = ends.mean(axis=1, keepdims=True)
    return ends - centroid + (SWIM_DRIFT * wave_speed * t)[:, None, None] * direction


def qpos_from_centreline(ends: np.ndarray, model) -> np.ndarray:
    """(T, nq) joint angles and root pose of the worm whose segment ends are ``ends`` (T, 25, 2)."""
    vec = ends[:, :-1] - ends[:, 1:]  # rear -> front of each segment: its anterior direction
    psi = np.arctan2(vec[..., 1], vec[..., 0])
    qpos = np.tile(model.qpos0, (len(ends), 1))
    qpos[:, 0:2] = ends[:, 0]
    qpos[:, 2] = A.MAX_RADIUS_M
    qpos[:, 3:7] = np.stack([np.cos(psi[:, 0] / 2), 0 * psi[:, 0], 0 * psi[:, 0], np.sin(psi[:, 0] / 2)], 1)
    turn = np.angle(np.exp(1j * (psi[:, :-1] - psi[:, 1:])))
    for j in range(1, A.SEGMENTS):
        qpos[:, model.joint(f"dv{j:02d}").qposadr[0]] = turn[:, j - 1]
        qpos[:, model.joint(f"lat{j:02d}").qposadr[0]] = 0.0
    return qpos


def make_worm_clips(
    mode: str,
    num_clips: int,
    seed: int = 0,
    *,
    frequency_hz: float | None = None,
    wavelength_bl: float | None = None,
    amplitude: float | None = None,
    duration_s: float = 5.0,
    fps: float = 30.0,
    body=None,
    keypoint_noise_m: float = 0.0,
) -> list[Clip]:
    """``num_clips`` clips of crawling or swimming (see the module docstring), parameters drawn where None.

    ``body``: the body (name or BodyModel) the clips are for; default ``worm`` for crawling and
    ``worm_liquid`` for swimming. Each clip starts at the origin, heading in a random direction.
    """
    from mimic_mjx.bodies.registry import get_body

    if mode not in MODES:
        raise ClipError(f"worm clips: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if int(num_clips) < 1:
        raise ClipError(f"worm clips: num_clips must be 1 or more, got {num_clips!r}")
    check_parameter("clip duration", duration_s, 0.1, 600.0, "s", "what a clip holds")
    check_parameter("clip rate", fps, 1.0, 1000.0, "Hz", "what a tracker records")
    body_model = get_body(body or BODIES[mode]) if not hasattr(body, "compile") else body
    model = body_model.compile()
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration_s * fps))) / fps
    clips = []
    for i in range(int(num_clips)):
        f = _parameter(mode, "frequency_hz", frequency_hz, rng)
        lam = _parameter(mode, "wavelength_bl", wavelength_bl, rng)
        amp = _parameter(mode, "amplitude", amplitude, rng)
        heading = float(rng.uniform(-math.pi, math.pi))
        phase0 = float(rng.uniform(0.0, 1.0 / f))  # where in the cycle the clip starts
        ends = centreline(mode, t + phase0, f, lam, amp, heading)
        ends -= ends[:1, :1]
        qpos = qpos_from_centreline(ends, model)
        name = f"worm_{mode}_{i:03d}_f{f:.2f}_lam{lam:.2f}_amp{amp:.1f}"
        clips.append(clip_from_qpos(body_model, name, qpos, fps, keypoint_noise_m=keypoint_noise_m, rng=rng))
    return clips
