"""NWB files with the ndx-pose extension (PoseEstimation / PoseEstimationSeries).

Read as plain HDF5: pynwb with ndx-pose >= 0.2 cannot construct files written
by ndx-pose 0.1 with an empty edge list (such as the DANNCE rat file), and the
layout is simple and stable across versions.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mimic_mjx.data.keypoints.common import (
    _as_names,
    _decode_attr,
    _ntype,
    _numeric,
    _open_h5,
    _positive_fps,
    _Raw,
    _warn,
)
from mimic_mjx.errors import KeypointError


def _children(group: h5py.Group) -> list[tuple[str, object]]:
    out = []
    for key in group:
        try:
            out.append((key, group[key]))
        except (KeyError, OSError):  # a dangling link: nothing to read there
            continue
    return out


def _nwb_skeleton(container: h5py.Group) -> tuple[tuple[str, ...], np.ndarray]:
    """Node names and edges: ndx-pose < 0.2 stores them on the container, later versions link a Skeleton."""
    for _key, child in _children(container):
        if isinstance(child, h5py.Group) and _ntype(child) == "Skeleton" and "nodes" in child:
            edges = child["edges"][()] if "edges" in child else np.zeros((0, 2), int)
            return _as_names(child["nodes"][()]), np.asarray(edges)
    if "nodes" in container:
        edges = container["edges"][()] if "edges" in container else np.zeros((0, 2), int)
        return _as_names(container["nodes"][()]), np.asarray(edges)
    return (), np.zeros((0, 2), int)


def _nwb_fps(series: h5py.Group) -> float | None:
    if "starting_time" in series:
        return _positive_fps(series["starting_time"].attrs.get("rate"))
    if "timestamps" in series:
        t = np.asarray(series["timestamps"][()], dtype=np.float64)
        step = float(np.median(np.diff(t))) if t.size >= 2 else 0.0
        if step > 0:  # rounded: timestamps carry float noise, no camera rate needs 1e-6 Hz
            return _positive_fps(round(1.0 / step, 6))
    return None


def _read_nwb(path: Path) -> _Raw:
    with _open_h5(path) as f:
        containers: list[h5py.Group] = []
        f.visititems(
            lambda name, obj: (
                containers.append(obj)
                if isinstance(obj, h5py.Group) and _ntype(obj) in ("PoseEstimation", "MultiCameraPoseEstimation")
                else None
            )
        )
        found = []
        for c in containers:
            series = [
                (k, s)
                for k, s in _children(c)
                if isinstance(s, h5py.Group) and _ntype(s) == "PoseEstimationSeries" and "data" in s
            ]
            if series:
                dims = {s["data"].shape[1] if s["data"].ndim == 2 else None for _, s in series}
                found.append((c, series, dims))
        if not found:
            raise KeypointError(
                f"{path}: no ndx-pose PoseEstimation with PoseEstimationSeries found; mimic-mjx "
                f"reads 3D keypoints stored with the ndx-pose extension (processing/behavior)"
            )
        three_d = [x for x in found if x[2] == {3}]
        if not three_d:
            raise KeypointError(
                f"{path}: its pose estimates are 2D (x, y per camera view), but mimic-mjx needs "
                f"3D keypoints (x, y, z). Triangulate the camera views first (e.g. with anipose "
                f"or sleap-anipose) and pass the 3D result."
            )
        # The series of a MultiCameraPoseEstimation are the triangulated 3D ones.
        three_d.sort(key=lambda x: _ntype(x[0]) != "MultiCameraPoseEstimation")
        if len(three_d) > 1:
            _warn(
                f"{path}: holds {len(three_d)} 3D pose estimations "
                f"({[x[0].name for x in three_d]}); reading the first, {three_d[0][0].name}"
            )
        container, series, _ = three_d[0]
        return _nwb_series(path, container, series)


def _nwb_series(path: Path, container: h5py.Group, series: list) -> _Raw:
    nodes, node_edges = _nwb_skeleton(container)
    keys = [k for k, _ in series]
    edges: tuple[tuple[int, int], ...] = ()
    if nodes and set(keys) <= set(nodes):  # the skeleton's order, not HDF5's alphabetical one
        by_name = dict(series)
        series = [(n, by_name[n]) for n in nodes if n in by_name]
        new_index = {nodes.index(k): i for i, (k, _) in enumerate(series)}
        edges = tuple(
            (new_index[int(a)], new_index[int(b)])
            for a, b in np.asarray(node_edges).reshape(-1, 2)
            if int(a) in new_index and int(b) in new_index
        )
    lengths = {s["data"].shape[0] for _, s in series}
    if len(lengths) != 1:
        raise KeypointError(
            f"{path}: its PoseEstimationSeries have different lengths {sorted(lengths)}; "
            f"all keypoints must share the same frames"
        )
    units = {_decode_attr(s["data"].attrs.get("unit", "")) for _, s in series}
    if len(units) != 1:
        raise KeypointError(
            f"{path}: its PoseEstimationSeries use different units {sorted(units)}; "
            f"mimic-mjx needs one length unit for all keypoints"
        )
    positions, confidence = [], []
    for _, s in series:
        d = s["data"]
        # NWB stores values such that value_in_unit = data * conversion + offset.
        conversion = float(d.attrs.get("conversion", 1.0))
        offset = float(d.attrs.get("offset", 0.0))
        positions.append(_numeric(d[()], path, f"series '{s.name}' data") * conversion + offset)
        c = _numeric(s["confidence"][()], path, f"series '{s.name}' confidence") if "confidence" in s else None
        confidence.append(c if c is not None and c.shape == (d.shape[0],) else np.ones(d.shape[0]))
    return _Raw(
        positions=np.stack(positions, axis=1),
        what="its PoseEstimationSeries",
        confidence=np.stack(confidence, axis=1),
        names=tuple(k for k, _ in series),
        edges=edges,
        file_unit=units.pop() or None,
        fps=_nwb_fps(series[0][1]),
    )
