"""A first keypoint -> body/site map for a model that has none (``mimic bodies suggest``).

Pure functions over arrays: the CLI reads the recording and the model and
passes in one frame of keypoints and the rest pose's body and site positions.

1. **Names** (bodies/namematch.py): every keypoint name is scored against
   every body and site name.
2. **Fit**: a similarity (rotation, translation, uniform scale; Umeyama) maps
   the rest pose onto the frame. Keypoints whose name picks out one body
   clearly are the anchors; with three or more (not all on a line) the fit is
   theirs, trimmed of the ones that disagree (a limb posed unlike the rest
   pose). Otherwise a search: both clouds' principal axes matched in each of
   the 24 proper ways, each refined by alternating a one-to-one assignment
   (Hungarian) and a refit (ICP, anchors held), the best kept. The scale
   absorbs the keypoints' unit and the model's size.
3. **Assignment**: score = name + closeness after the fit (sites a hair
   ahead of a body they tie with; an anchor stays on its body); a Hungarian assignment over the targets,
   each offered several times at a growing cost, so keypoints spread over
   the targets where they can and still share a body where they must (ears
   and snout on the skull).
4. **Doubt**: a pair is sure when its name picks its body clearly (and the fit
   does not put it across the body), or when the fit puts the keypoint close
   to its target with no other body about as close; every other pair is
   marked with its reasons. Every distance is a fraction of the rest pose's
   extent, so the thresholds hold from a 1-mm worm to a 1-m animal.
"""

from __future__ import annotations

import dataclasses
import itertools

import mujoco
import numpy as np
from scipy.optimize import linear_sum_assignment

from mimic_mjx.bodies.namematch import name_scores
from mimic_mjx.errors import BodyError, KeypointError

# All distances: fractions of the rest pose's extent (its bounding box's diagonal).
NEAR = 0.05  # the fit puts a keypoint this close to its target: the position confirms it
AMBIGUOUS = 0.03  # another body within this much further than the chosen one: too close to call
NAME_FAR = 0.5  # a name-sure pair still doubted when the fit puts it this far off (the whole body away)
GEO_WIDTH = 0.05  # closeness score 1 / (1 + (d / GEO_WIDTH)^2): 0.5 at GEO_WIDTH
# Names.
NAME_SURE = 0.6  # a name score this high ...
NAME_MARGIN = 0.1  # ... and this far above any other body's: the name picks the body
W_NAME, W_GEO = 0.7, 0.3  # combined score; a sure name outweighs any closeness
SITE_BONUS = 0.01  # a site wins a tie with a body: a site marks a point, a body only a frame
REPEAT_COST = {"body": 0.1, "site": 0.3}  # each further keypoint on one target; several on a site is odd
MAX_COPIES = 4
# Fit.
TRIM = 0.8  # the fit's residual: over the best 80 % of pairs (some points have no counterpart)
OUTLIER = 2.5  # anchors beyond this many times the median residual are refitted without
COLLINEAR = 0.05  # anchors whose second spread is below this fraction of the first lie on a line
MAX_ICP = 40


@dataclasses.dataclass(frozen=True)
class Targets:
    """What a keypoint can ride on: bodies and sites, their owning bodies, rest-pose world positions."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # "body" or "site"
    bodies: tuple[str, ...]  # the body each target moves with (a body's own name)
    positions: np.ndarray  # (N, 3) model units, at qpos0


def model_targets(model: mujoco.MjModel) -> Targets:
    """Every body (but the world) and every site on one, at the rest pose (qpos0)."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    names, kinds, bodies, pos = [], [], [], []
    for b in range(1, model.nbody):
        names.append(model.body(b).name), kinds.append("body"), bodies.append(model.body(b).name)
        pos.append(data.xpos[b].copy())
    for s in range(model.nsite):
        b = int(model.site_bodyid[s])
        if b == 0 or not model.site(s).name:  # world sites do not move with the animal
            continue
        names.append(model.site(s).name), kinds.append("site"), bodies.append(model.body(b).name)
        pos.append(data.site_xpos[s].copy())
    if len(names) < 3:
        raise BodyError(f"the model has {len(names)} bodies and sites; a keypoint map needs 3 at least")
    return Targets(tuple(names), tuple(kinds), tuple(bodies), np.asarray(pos, dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class Similarity:
    """x = scale * R p + t: model (rest pose) -> keypoints."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, p: np.ndarray) -> np.ndarray:
        return self.scale * p @ self.rotation.T + self.translation

    def invert(self, x: np.ndarray) -> np.ndarray:
        return (x - self.translation) @ self.rotation / self.scale


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991; a rotation, never a mirror)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var = float((a**2).sum()) / len(src)
    if var <= 0.0:
        raise BodyError("cannot fit the rest pose: the points it was given all coincide")
    u, sv, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sv * d).sum()) / var
    if not scale > 0.0:
        raise BodyError("cannot fit the rest pose: the keypoints are degenerate (all on one point)")
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def extent(positions: np.ndarray) -> float:
    """The rest pose's size: its bounding box's diagonal (model units)."""
    size = float(np.linalg.norm(positions.max(0) - positions.min(0)))
    if not size > 0.0:
        raise BodyError("the model's bodies and sites all sit at one point at rest; there is no pose to fit")
    return size


def pick_frame(positions: np.ndarray, frame: int | None) -> int:
    """``frame``, checked, or the first frame with the most keypoints present."""
    present = (~np.isnan(positions).any(axis=2)).sum(axis=1)
    n = len(present)
    if frame is None:
        frame = int(np.argmax(present)) if n else 0
    elif not 0 <= frame < n:
        raise KeypointError(f"--frame {frame}: the recording has {n} frames (0 to {n - 1})")
    if n == 0 or present[frame] < 3:
        got = int(present[frame]) if n else 0
        raise KeypointError(
            f"frame {frame} has {got} keypoints present; the fit needs 3 at least (pass --frame with a fuller frame)"
        )
    return frame


def _spread_ok(points: np.ndarray) -> bool:
    sv = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return len(points) >= 3 and sv[0] > 0 and sv[1] / sv[0] >= COLLINEAR


def _trimmed(d: np.ndarray) -> float:
    keep = max(3, int(np.ceil(TRIM * len(d))))
    return float(np.sqrt(np.mean(np.sort(d)[:keep] ** 2)))


def _anchor_fit(p: np.ndarray, x: np.ndarray, choices: list[np.ndarray]) -> tuple[Similarity, np.ndarray]:
    """Umeyama on the anchors: (fit, each anchor's target).

    A name picks a body, not a point on it ("Hand" may be the paw's tip, a site on the hand, or
    the wrist, the hand's origin), so each anchor tries every target on its body, one anchor at
    a time, kept when the fit's residual drops (moving each to its nearest target instead sticks:
    the fit shrinks onto the first guesses). Then anchors far off the others (a limb posed unlike
    the rest pose) are left out of the fit.
    """

    def cost(pick):  # every anchor counts: a trimmed cost ignores the one anchor being moved
        fit = similarity_fit(p[pick], x)
        return float(np.sqrt(np.mean((fit.invert(x) - p[pick]) ** 2))), fit

    pick = np.array([c[0] for c in choices])
    best, fit = cost(pick)
    for _ in range(5):
        improved = False
        for i, options in enumerate(choices):
            for j in options:
                if j == pick[i]:
                    continue
                trial = pick.copy()
                trial[i] = j
                c, f = cost(trial)
                if c < best - 1e-12 * (1.0 + best):
                    best, fit, pick, improved = c, f, trial, True
        if not improved:
            break
    r = np.linalg.norm(fit.invert(x) - p[pick], axis=1)
    keep = r <= OUTLIER * max(float(np.median(r)), 1e-12)
    if 3 <= keep.sum() < len(x) and _spread_ok(p[pick[keep]]):
        fit = similarity_fit(p[pick[keep]], x[keep])
    return fit, pick


def _signed_axes() -> list[np.ndarray]:
    """The 48 signed permutation matrices: every way to match two sets of principal axes."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            out.append(m)
    return out


def _icp(p: np.ndarray, x: np.ndarray, fit: Similarity, forced: dict[int, int], size: float):
    """Alternate a one-to-one assignment and a refit; (fit, trimmed residual / extent)."""
    copies = int(np.ceil(len(x) / len(p)))  # more keypoints than targets: targets shared
    cols = prev = None
    for _ in range(MAX_ICP):
        y = fit.invert(x)
        cost = ((y[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        for k, j in forced.items():
            row = np.full(len(p), 1e3 * cost.max() + 1.0)
            row[j] = 0.0
            cost[k] = row
        rows, cols = linear_sum_assignment(np.tile(cost, copies))
        cols = cols % len(p)
        if prev is not None and (cols == prev).all():
            break
        prev = cols
        if len(set(cols.tolist())) < 3:
            break
        fit = similarity_fit(p[cols], x[rows])
    d = np.linalg.norm(fit.invert(x) - p[cols], axis=1) / size
    return fit, _trimmed(d)


def _search(p: np.ndarray, x: np.ndarray, forced: dict[int, int], size: float) -> tuple[Similarity, float]:
    """The rest pose matched to the frame without trusted correspondences: 24 starts, ICP from each."""
    cp, cx = p.mean(0), x.mean(0)
    vp = np.linalg.svd(p - cp, full_matrices=False)[2].T
    vx = np.linalg.svd(x - cx, full_matrices=False)[2].T
    scale = np.sqrt(((x - cx) ** 2).sum(1).mean() / max(((p - cp) ** 2).sum(1).mean(), 1e-300))
    best = None
    for axes in _signed_axes():
        rot = vx @ axes @ vp.T
        if np.linalg.det(rot) < 0:  # a mirror image: no rotation does that (24 of 48 remain)
            continue
        start = Similarity(float(scale), rot, cx - scale * rot @ cp)
        fit, cost = _icp(p, x, start, forced, size)
        if best is None or cost < best[1] - 1e-12:
            best = (fit, cost)
    return best


@dataclasses.dataclass(frozen=True)
class Pair:
    keypoint: str
    target: str
    kind: str  # "body" or "site"
    body: str  # the body the target moves with
    name_score: float
    distance: float  # from the target after the fit, keypoint units; nan: not in the frame
    relative: float  # the same, as a fraction of the rest pose's extent
    reasons: tuple[str, ...] = ()  # why unsure (empty: sure); see describe_reasons
    rival: str = ""  # the target nearest the keypoint on another body

    @property
    def unsure(self) -> bool:
        return bool(self.reasons)


@dataclasses.dataclass(frozen=True)
class Suggestion:
    pairs: tuple[Pair, ...]
    fit: Similarity
    method: str  # "names" (fitted on name anchors) or "search"
    anchors: tuple[str, ...]
    residual: float  # the fit's trimmed RMS residual, fraction of the extent
    extent: float  # the rest pose's extent, model units

    @property
    def mapping(self) -> dict[str, str]:
        return {p.keypoint: p.target for p in self.pairs}

    @property
    def body_mapping(self) -> dict[str, str]:
        return {p.keypoint: p.body for p in self.pairs}


def _anchors(scores: np.ndarray, bodies: np.ndarray, sites: np.ndarray, seen: np.ndarray) -> dict[int, int]:
    """Keypoint -> target for names that pick out one body clearly (a site on it if one ties)."""
    out = {}
    for k in np.flatnonzero(seen):
        j = int(np.argmax(scores[k] + SITE_BONUS * sites))
        others = scores[k][bodies != bodies[j]]
        if scores[k, j] >= NAME_SURE and scores[k, j] - others.max(initial=0.0) >= NAME_MARGIN:
            out[int(k)] = j
    return out


def _assign(score: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """Each keypoint's target: best total score, each target offered MAX_COPIES times at a growing cost."""
    k_count, n = score.shape
    copies = min(MAX_COPIES, k_count)
    extra = np.array([REPEAT_COST[k] for k in kinds])
    cost = np.concatenate([-score + c * extra[None, :] for c in range(copies)], axis=1)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(k_count, dtype=int)
    out[rows] = cols % n
    return out


def suggest_map(names, points: np.ndarray, targets: Targets) -> Suggestion:
    """The suggested map of keypoints ``names`` at ``points`` ((K, 3), NaN where missing) onto ``targets``."""
    names = tuple(names)
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (len(names), 3):
        raise KeypointError(f"{len(names)} keypoint names for points of shape {points.shape}; expected (K, 3)")
    p = targets.positions
    size = extent(p)
    bodies = np.array(targets.bodies)
    sites = np.array([k == "site" for k in targets.kinds], dtype=float)
    scores = np.asarray(name_scores(names, targets.names), dtype=np.float64).reshape(len(names), len(p))
    seen = ~np.isnan(points).any(axis=1)
    if seen.sum() < 3:
        raise KeypointError(f"{int(seen.sum())} keypoints present in the frame; the fit needs 3 at least")
    anchors = _anchors(scores, bodies, sites, seen)
    index = {int(k): i for i, k in enumerate(np.flatnonzero(seen))}  # keypoint -> row among the seen
    x = points[seen]
    ak = list(anchors)
    if len(ak) >= 3 and _spread_ok(p[[anchors[k] for k in ak]]):
        method = "names"
        # The name's target first, then the body's other targets.
        choices = [np.array([anchors[k]] + [j for j in np.flatnonzero(bodies == bodies[anchors[k]])]) for k in ak]
        fit, picked = _anchor_fit(p, points[ak], choices)
        residual = _trimmed(np.linalg.norm(fit.invert(points[ak]) - p[picked], axis=1) / size)
    else:
        method = "search"
        fit, residual = _search(p, x, {index[k]: j for k, j in anchors.items()}, size)
    dist = np.full(scores.shape, np.nan)
    dist[seen] = np.linalg.norm(fit.invert(x)[:, None, :] - p[None, :, :], axis=2) / size
    close = np.where(np.isnan(dist), 0.0, 1.0 / (1.0 + (np.nan_to_num(dist) / GEO_WIDTH) ** 2))
    total = W_NAME * scores + W_GEO * close + SITE_BONUS * sites[None, :]
    for k, j in anchors.items():  # a name that picks a body keeps the keypoint on it; the fit picks the point
        total[k, bodies != bodies[j]] -= 1.0
    chosen = _assign(total, targets.kinds)
    pairs = []
    for k, kp in enumerate(names):
        j = int(chosen[k])
        reasons = _doubts(scores[k], dist[k], j, bodies)
        d = float(dist[k, j])
        other = np.flatnonzero(bodies != bodies[j])
        rival = targets.names[other[np.argmin(dist[k, other])]] if seen[k] and len(other) else ""
        target = (targets.names[j], targets.kinds[j], targets.bodies[j])
        pairs.append(Pair(kp, *target, float(scores[k, j]), d * size * fit.scale, d, reasons, rival))
    return Suggestion(tuple(pairs), fit, method, tuple(names[k] for k in ak), residual, size)


def _doubts(score: np.ndarray, dist: np.ndarray, j: int, bodies: np.ndarray) -> tuple[str, ...]:
    """Why a keypoint's pair with target ``j`` is unsure: codes that describe_reasons words; () = sure."""
    other = bodies != bodies[j]
    rival = float(score[other].max(initial=0.0))
    name_sure = score[j] >= NAME_SURE and score[j] - rival >= NAME_MARGIN
    if np.isnan(dist[j]):
        return () if name_sure else ("unseen", "name weak" if score[j] < NAME_SURE else "name shared")
    d = float(dist[j])
    runner = float(dist[other].min(initial=np.inf))
    nearest_elsewhere = runner < d
    geo_sure = d <= NEAR and runner - d >= AMBIGUOUS
    if (name_sure and d <= NAME_FAR) or geo_sure:
        return ()
    reasons = []
    if not name_sure:
        reasons.append("name weak" if score[j] < NAME_SURE else "name shared")
    if d > NEAR:
        reasons.append("far")
    if nearest_elsewhere:
        reasons.append("nearer another")
    elif runner - d < AMBIGUOUS:
        reasons.append("ambiguous")
    return tuple(reasons)


_WORDS = {
    "unseen": "not in the fitted frame",
    "name weak": "name match weak",
    "name shared": "name matches several bodies",
    "nearer another": "{rival} is nearer",
    "ambiguous": "{rival} is about as near",
}


def describe_reasons(pair: Pair, unit: str = "") -> str:
    """One line: why ``pair`` is unsure, its distance in the keypoints' unit and as a share of the body."""
    parts = [_WORDS[r].format(rival=pair.rival) for r in pair.reasons if r != "far"]
    if not np.isnan(pair.distance):
        far = f"{pair.distance:.3g}{(' ' + unit) if unit else ''} ({100 * pair.relative:.0f}% of the body's size)"
        parts.append(f"{far} from {pair.target} after the rest-pose fit")
    return ", ".join(parts)
