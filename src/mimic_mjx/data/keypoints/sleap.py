"""SLEAP: analysis HDF5 / sleap-anipose points3d.h5, and .slp label files.

HDF5 ``tracks`` come in several layouts (sleap-anipose 3D, SLEAP's transposed
2D analysis export); 2D data is refused with a pointer to triangulation. A
.slp holds 2D labels, plus triangulated 3D instances in sleap-io >= 0.6
sessions, which are the only part read (sleap-io is imported only here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimic_mjx.data.keypoints.common import _as_names, _numeric, _open_h5, _positive_fps, _Raw, _warn
from mimic_mjx.errors import KeypointError


def _sleap_tracks(tracks: np.ndarray, path: Path) -> tuple[np.ndarray, int, bool]:
    """tracks -> ((frames, tracks, K, 3), number of tracks, whether it came transposed)."""
    two_d = KeypointError(
        f"{path}: 'tracks' has shape {tracks.shape}: 2D keypoints (x, y), as in a SLEAP "
        f"analysis file. mimic-mjx needs 3D keypoints: triangulate the camera views first "
        f"(e.g. sleap-anipose) and pass its points3d.h5."
    )
    if tracks.ndim == 3:  # (frames, K, xyz)
        if tracks.shape[2] == 2:
            raise two_d
        if tracks.shape[2] == 3:
            return tracks[:, None], 1, False
    elif tracks.ndim == 4:
        if tracks.shape[3] == 3:  # sleap-anipose: (frames, tracks, K, xyz)
            return tracks, tracks.shape[1], False
        if tracks.shape[3] == 2 or tracks.shape[1] == 2:
            raise two_d
        if tracks.shape[1] == 3:  # SLEAP analysis layout, stored transposed: (tracks, xyz, K, frames)
            return tracks.transpose(3, 0, 2, 1), tracks.shape[0], True
    raise KeypointError(
        f"{path}: 'tracks' has shape {tracks.shape}; expected (frames, tracks, keypoints, 3) or (frames, keypoints, 3)"
    )


def _read_sleap_h5(path: Path) -> _Raw:
    with _open_h5(path) as f:
        if "tracks" not in f:
            raise KeypointError(
                f"{path}: no 'tracks' dataset; expected a SLEAP/sleap-anipose HDF5 file (it holds {list(f.keys())})"
            )
        tracks, n_tracks, transposed = _sleap_tracks(_numeric(f["tracks"][()], path, "'tracks'"), path)
        if n_tracks > 1:
            _warn(f"{path}: holds {n_tracks} tracks (animals); reading the first one")
        positions = tracks[:, 0]
        T, K = positions.shape[:2]
        names = _as_names(f["node_names"][()]) if "node_names" in f else None
        edges = ()
        if "edge_inds" in f and f["edge_inds"].size:
            edges = tuple((int(a), int(b)) for a, b in np.asarray(f["edge_inds"][()]).reshape(-1, 2))
        confidence = None
        for key in ("point_scores", "scores"):
            if key not in f:
                continue
            s = _numeric(f[key][()], path, f"'{key}'")
            if transposed and s.ndim == 3:  # (tracks, K, frames)
                s = s.transpose(2, 0, 1)
            if s.ndim == 3 and s.shape[0] == T and s.shape[2] == K:
                s = s[:, 0]
            if s.shape == (T, K):
                confidence = s
                break
            _warn(f"{path}: ignoring '{key}' of shape {s.shape} (expected ({T}, {K}) per track)")
    return _Raw(positions=positions, what="SLEAP HDF5 files", confidence=confidence, names=names, edges=edges)


# ---------------------------------------------------------------------------
# SLEAP .slp: 2D labels, plus triangulated 3D instances in sleap-io >= 0.6 sessions.


def _read_slp(path: Path) -> _Raw:
    try:
        import sleap_io
    except ImportError:
        raise KeypointError(f"reading {path} needs sleap-io: pip install sleap-io") from None
    labels = sleap_io.load_slp(str(path), open_videos=False)
    sessions = []
    for session in labels.sessions:
        found = {}
        multi = False
        for frame_idx, group in session.frame_groups.items():
            with_3d = [ig.instance_3d for ig in group.instance_groups if ig.instance_3d is not None]
            multi |= len(with_3d) > 1
            if with_3d:
                found[int(frame_idx)] = with_3d[0]
        if found:
            sessions.append((found, multi))
    if not sessions:
        raise KeypointError(
            f"{path}: this .slp file holds 2D keypoints (x, y per camera view) and no triangulated "
            f"3D points; mimic-mjx needs 3D keypoints. Triangulate first (e.g. sleap-anipose) and "
            f"pass its 3D output (points3d.h5)."
        )
    found, multi = sessions[0]
    if len(sessions) > 1:
        _warn(f"{path}: holds {len(sessions)} recording sessions with 3D points; reading the first")
    if multi:
        _warn(f"{path}: some frames hold several 3D instances (animals); reading the first of each frame")
    first, last = min(found), max(found)
    skeleton = next(iter(found.values())).skeleton
    K = len(skeleton.nodes)
    positions = np.full((last - first + 1, K, 3), np.nan)
    confidence = np.zeros((last - first + 1, K))
    for frame_idx, inst in found.items():
        positions[frame_idx - first] = inst.numpy()
        scores = getattr(inst, "point_scores", None)
        confidence[frame_idx - first] = 1.0 if scores is None else np.asarray(scores, dtype=np.float64)
    fps = labels.videos[0].fps if labels.videos else None
    return _Raw(
        positions=positions,
        what=".slp files",
        confidence=confidence,
        names=tuple(skeleton.node_names),
        edges=tuple((int(a), int(b)) for a, b in skeleton.edge_inds),
        fps=_positive_fps(fps),
    )
