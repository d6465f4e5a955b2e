"""Keypoint readers: real DANNCE/NWB/mouse-arm files, synthetic SLEAP/.slp/CSV/NWB files, and bad input."""

from __future__ import annotations

import datetime
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import DATA, MOUSE_ARM
from mimic_mjx.bodies.skeletons import RAT23_EDGES, RAT23_NAMES
from mimic_mjx.data.keypoints import (
    FORMATS,
    Keypoints,
    KeypointWarning,
    body_extent,
    check_plausible_size,
    read_keypoints,
    read_skeleton,
)
from mimic_mjx.errors import KeypointError, MimicError

RODENT = DATA / "rodent"
NAMES3 = ("head", "body", "tail")


def real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the project)")
    return path


def dannce_pred() -> np.ndarray:
    import scipy.io

    return scipy.io.loadmat(real(RODENT / "rat_dannce_1000f.mat"))["pred"]


def points(frames: int = 12, k: int = 3, seed: int = 0) -> np.ndarray:
    """(frames, k, 3) millimetre-scale positions."""
    return np.random.default_rng(seed).normal(scale=30.0, size=(frames, k, 3))


# ---------------------------------------------------------------------------
# Real files


@pytest.mark.needs_data
def test_real_dannce_without_skeleton_uses_rat23_and_needs_fps():
    path = real(RODENT / "rat_dannce_1000f.mat")
    with pytest.raises(KeypointError, match=r"no frame rate.*--fps 50"):
        read_keypoints(path)
    pred = dannce_pred()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp = read_keypoints(path, fps=50)
    assert kp.positions.shape == (1000, 23, 3) and kp.positions.dtype == np.float64
    np.testing.assert_array_equal(kp.positions, pred.transpose(0, 2, 1) / 1000.0)
    assert kp.names == RAT23_NAMES and kp.edges == RAT23_EDGES
    assert kp.fps == 50.0 and kp.num_frames == 1000 and kp.input_units == "mm"
    np.testing.assert_array_equal(kp.confidence, 1.0)  # the file has no p_max
    assert kp.source.startswith("dannce:")
    # A rat spans roughly 0.1-0.3 m nose to tail: the millimetre default is right.
    assert 0.1 < check_plausible_size(kp, 0.25, body="the rat") < 0.3


@pytest.mark.needs_data
def test_real_dannce_with_skeleton():
    skeleton = real(RODENT / "rat23_skeleton.mat")
    kp = read_keypoints(RODENT / "rat_dannce_1000f.mat", fps=50, skeleton=skeleton)
    names, edges = read_skeleton(skeleton)
    assert kp.names == names == RAT23_NAMES
    assert kp.edges == edges == RAT23_EDGES  # 1-based joints_idx became 0-based
    np.testing.assert_array_equal(kp.positions, dannce_pred().transpose(0, 2, 1) / 1000.0)
    assert kp.positions[:, RAT23_NAMES.index("Snout")].shape == (1000, 3)


@pytest.mark.needs_data
def test_real_nwb_equals_mat_values_in_skeleton_order():
    path = real(RODENT / "rat_dannce_1000f.nwb")
    mat = read_keypoints(real(RODENT / "rat_dannce_1000f.mat"), fps=50)
    kp = read_keypoints(path, units="mm", fps=50)
    # HDF5 lists the series alphabetically; the reader restores the file's node order (= rat23).
    assert kp.names == RAT23_NAMES
    np.testing.assert_array_equal(kp.positions, mat.positions)
    assert kp.fps == 50.0 and kp.input_units == "mm"
    with h5py.File(path, "r") as f:
        snout_conf = f["processing/behavior/PoseEstimation/Snout/confidence"][()]
    np.testing.assert_array_equal(kp.confidence[:, 0], snout_conf)
    assert 0 < kp.confidence.min() and kp.confidence.max() <= 1


@pytest.mark.needs_data
def test_real_nwb_frame_rate_comes_from_its_timestamps_unless_given():
    kp = read_keypoints(real(RODENT / "rat_dannce_1000f.nwb"), units="mm")
    assert kp.fps == 30.0  # what its timestamps say (the data is really 50 Hz: pass fps=50)


@pytest.mark.needs_data
def test_real_nwb_pixels_unit_is_refused_without_units():
    with pytest.raises(KeypointError, match=r"'pixels', not a length unit.*--units mm"):
        read_keypoints(real(RODENT / "rat_dannce_1000f.nwb"), fps=50)


@pytest.mark.needs_data
def test_real_mouse_arm():
    path = real(MOUSE_ARM / "trial01_ik.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp = read_keypoints(path)
    with h5py.File(path, "r") as f:
        kp_data = f["kp_data"][()]
    assert kp.names == ("Shoulder", "Elbow", "Wrist")
    assert kp.fps == 200.0 and kp.input_units == "m"
    np.testing.assert_array_equal(kp.positions, kp_data.reshape(100, 3, 3).astype(np.float64))
    assert 0.003 < check_plausible_size(kp, 0.01, body="the mouse forelimb") < 0.03
    assert read_keypoints(path, fps=100).fps == 100.0
    assert read_keypoints(path, format="mouse_arm_h5").names == kp.names


@pytest.mark.needs_data
def test_real_dannce_units_off_by_1000_detected():
    kp = read_keypoints(real(RODENT / "rat_dannce_1000f.mat"), fps=50, units="m")
    with pytest.raises(KeypointError, match=r"span about 164 m.*the rat spans about 0.25 m.*--units mm"):
        check_plausible_size(kp, 0.25, body="the rat")


# ---------------------------------------------------------------------------
# DANNCE .mat: synthetic layouts


def save_mat(path: Path, **arrays) -> Path:
    import scipy.io

    scipy.io.savemat(path, arrays)
    return path


def test_dannce_frames_k_3_layout_names_and_p_max(tmp_path):
    pos = points(10, 4)
    p_max = np.random.default_rng(1).uniform(size=(10, 4))
    names = np.array(["a", "b", "c", "d"], dtype=object)
    path = save_mat(tmp_path / "pred.mat", pred=pos, p_max=p_max, joint_names=names)
    kp = read_keypoints(path, fps=30)
    assert kp.names == ("a", "b", "c", "d")
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    np.testing.assert_allclose(kp.confidence, p_max)


def test_dannce_unknown_keypoint_count_gets_generic_names(tmp_path):
    path = save_mat(tmp_path / "pred.mat", pred=points(10, 5).transpose(0, 2, 1))
    with pytest.warns(KeypointWarning, match=r"kp0..kp4"):
        kp = read_keypoints(path, fps=30)
    assert kp.names == ("kp0", "kp1", "kp2", "kp3", "kp4") and kp.edges == ()
    kp = read_keypoints(path, fps=30, names=["a", "b", "c", "d", "e"])
    assert kp.names == ("a", "b", "c", "d", "e")


def write_mat73(path: Path, pred: np.ndarray, names: list[str] | None = None) -> Path:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5, arrays transposed, cells as references."""
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset("pred", data=pred.T)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        if names is not None:
            refs = f.create_group("#refs#")
            handles = []
            for i, n in enumerate(names):
                c = refs.create_dataset(f"n{i}", data=np.array([[ord(ch)] for ch in n], dtype=np.uint16))
                c.attrs["MATLAB_class"] = np.bytes_("char")
                handles.append(c.ref)
            cell = f.create_dataset(
                "joint_names", data=np.array([handles], dtype=h5py.ref_dtype).T, dtype=h5py.ref_dtype
            )
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128, b" "))
    return path


def test_dannce_mat_v73(tmp_path):
    pos = points(8, 4)
    names = ("head", "body", "tail", "paw")
    path = write_mat73(tmp_path / "pred73.mat", pos.transpose(0, 2, 1), names=list(names))
    kp = read_keypoints(path, fps=50)
    assert kp.names == names
    np.testing.assert_allclose(kp.positions, pos / 1000.0)


def test_dannce_bad_shapes_and_keys(tmp_path):
    with pytest.raises(KeypointError, match=r"'pred' has shape \(10, 4\)"):
        read_keypoints(save_mat(tmp_path / "flat.mat", pred=np.zeros((10, 4))), fps=50)
    with pytest.raises(KeypointError, match=r"'pred' has shape \(10, 4, 5\)"):
        read_keypoints(save_mat(tmp_path / "nox.mat", pred=np.zeros((10, 4, 5))), fps=50)
    with pytest.raises(KeypointError, match=r"no 'pred' variable.*skeleton file.*skeleton="):
        read_keypoints(save_mat(tmp_path / "sk.mat", joint_names=np.array(["a"], dtype=object)), fps=50)
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(KeypointError, match=r"cannot read .*garbage.mat as 'dannce'"):
        read_keypoints(garbage, fps=50)


def test_ambiguous_3x3_dannce_reads_dannce_layout_with_warning(tmp_path):
    pos = points(6, 3)
    path = save_mat(tmp_path / "p.mat", pred=pos.transpose(0, 2, 1))
    with pytest.warns(KeypointWarning, match="frames, 3 xyz, 3 keypoints"):
        kp = read_keypoints(path, fps=50, names=NAMES3)
    np.testing.assert_allclose(kp.positions, pos / 1000.0)


# ---------------------------------------------------------------------------
# Skeleton option


def save_skeleton(path: Path, names, edges_1based) -> Path:
    return save_mat(
        path, joint_names=np.array(list(names), dtype=object), joints_idx=np.array(edges_1based, dtype=np.float64)
    )


def test_skeleton_names_unnamed_keypoints_by_position(tmp_path):
    path = save_mat(tmp_path / "p.mat", pred=points(6, 4).transpose(0, 2, 1))
    sk = save_skeleton(tmp_path / "sk.mat", ["a", "b", "c", "d"], [[1, 2], [2, 3], [3, 4]])
    kp = read_keypoints(path, fps=50, skeleton=sk)
    assert kp.names == ("a", "b", "c", "d") and kp.edges == ((0, 1), (1, 2), (2, 3))


def test_skeleton_reorders_named_keypoints_and_refuses_other_names(tmp_path):
    pos = points(6, 3)
    csv_path = write_anipose(tmp_path / "a.csv", pos, ("tail", "head", "body"))
    sk = save_skeleton(tmp_path / "sk.mat", NAMES3, [[1, 2], [2, 3]])
    kp = read_keypoints(csv_path, fps=50, units="mm", skeleton=sk)
    assert kp.names == NAMES3 and kp.edges == ((0, 1), (1, 2))
    np.testing.assert_allclose(kp.positions, pos[:, [1, 2, 0]] / 1000.0)
    other = save_skeleton(tmp_path / "other.mat", ("x", "y", "z"), [[1, 2]])
    with pytest.raises(KeypointError, match=r"not the skeleton's"):
        read_keypoints(csv_path, fps=50, units="mm", skeleton=other)
    short = save_skeleton(tmp_path / "short.mat", ("head", "body"), [[1, 2]])
    with pytest.raises(KeypointError, match=r"names 2 keypoints but the file holds 3"):
        read_keypoints(csv_path, fps=50, units="mm", skeleton=short)
    with pytest.raises(KeypointError, match="skeleton file not found"):
        read_keypoints(csv_path, fps=50, units="mm", skeleton=tmp_path / "missing.mat")


# ---------------------------------------------------------------------------
# NWB (ndx-pose >= 0.2 layout, written with pynwb)


def write_nwb(
    path: Path, pos: np.ndarray, names=NAMES3, unit="millimeters", rate=100.0, conf=True, series_order=None
) -> Path:
    pynwb = pytest.importorskip("pynwb")
    ndx_pose = pytest.importorskip("ndx_pose")
    nwb = pynwb.NWBFile(
        session_description="test",
        identifier="test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    )
    behavior = nwb.create_processing_module("behavior", "behaviour")
    skeleton = ndx_pose.Skeleton(name="animal", nodes=list(names), edges=np.array([[0, 1], [1, 2]], dtype="uint8"))
    behavior.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    rng = np.random.default_rng(3)
    order = series_order or range(len(names))
    series = [
        ndx_pose.PoseEstimationSeries(
            name=names[k],
            data=pos[:, k],
            unit=unit,
            reference_frame="arena",
            confidence=rng.uniform(size=pos.shape[0]) if conf else None,
            rate=rate,
        )
        for k in order
    ]
    behavior.add(
        ndx_pose.PoseEstimation(name="pose", pose_estimation_series=series, skeleton=skeleton, source_software="test")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def test_nwb_modern_layout(tmp_path):
    pos = points(20, 3)
    path = write_nwb(tmp_path / "a.nwb", pos, series_order=[2, 0, 1])
    kp = read_keypoints(path)
    assert kp.names == NAMES3 and kp.edges == ((0, 1), (1, 2))  # skeleton order, skeleton edges
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    assert kp.fps == 100.0 and kp.input_units == "mm"
    assert ((kp.confidence > 0) & (kp.confidence < 1)).all()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(kp.confidence[:, 0], f["processing/behavior/pose/head/confidence"][()])
    with pytest.warns(KeypointWarning, match="overridden by units='cm'"):
        assert np.allclose(read_keypoints(path, units="cm", fps=25).positions, pos / 100.0)


def test_nwb_metres_without_confidence(tmp_path):
    pos = points(20, 3) / 1000.0
    kp = read_keypoints(write_nwb(tmp_path / "m.nwb", pos, unit="meters", conf=False))
    np.testing.assert_allclose(kp.positions, pos)
    np.testing.assert_array_equal(kp.confidence, 1.0)


def test_nwb_2d_is_refused(tmp_path):
    path = write_nwb(tmp_path / "flat.nwb", points(20, 3)[:, :, :2], unit="pixels")
    with pytest.raises(KeypointError, match=r"2D.*needs 3D keypoints.*Triangulate"):
        read_keypoints(path, units="mm", fps=30)


def test_nwb_without_pose_estimation(tmp_path):
    path = tmp_path / "empty.nwb"
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        f.create_group("processing/behavior")
    with pytest.raises(KeypointError, match="no ndx-pose PoseEstimation"):
        read_keypoints(path)


# ---------------------------------------------------------------------------
# SLEAP / sleap-anipose HDF5


def write_sleap_h5(path: Path, tracks: np.ndarray, names=None, scores=None, scores_key="point_scores") -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("tracks", data=tracks)
        if names is not None:
            f.create_dataset("node_names", data=np.array(names, dtype="S"))
        if scores is not None:
            f.create_dataset(scores_key, data=scores)
    return path


def test_sleap_anipose_points3d_with_names_and_scores(tmp_path):
    pos = points(15, 3)
    scores = np.random.default_rng(2).uniform(size=(15, 1, 3))
    path = write_sleap_h5(tmp_path / "points3d.h5", pos[:, None], names=NAMES3, scores=scores)
    with pytest.warns(KeypointWarning, match="record no length unit; assuming millimetres"):
        kp = read_keypoints(path, fps=100)
    assert kp.names == NAMES3 and kp.source.startswith("sleap_h5:")
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    np.testing.assert_allclose(kp.confidence, scores[:, 0])
    with pytest.raises(KeypointError, match=r"no frame rate.*--fps"):
        read_keypoints(path, units="mm")


def test_sleap_h5_frames_k_3_without_names(tmp_path):
    pos = points(15, 3)
    path = write_sleap_h5(tmp_path / "t.h5", pos, scores=np.ones((15, 3)), scores_key="scores")
    with pytest.warns(KeypointWarning, match="kp0..kp2"):
        kp = read_keypoints(path, fps=100, units="m")
    np.testing.assert_allclose(kp.positions, pos)
    kp = read_keypoints(path, fps=100, units="cm", names=NAMES3)
    assert kp.names == NAMES3
    np.testing.assert_allclose(kp.positions, pos / 100.0)


def test_sleap_h5_transposed_analysis_layout_and_two_tracks(tmp_path):
    pos = points(15, 3)
    tracks = np.stack([pos, pos + 1.0])  # (tracks, frames, K, 3)
    stored = tracks.transpose(0, 3, 2, 1)  # SLEAP analysis files: (tracks, xyz, K, frames)
    scores = np.random.default_rng(4).uniform(size=(2, 3, 15))
    path = write_sleap_h5(tmp_path / "analysis.h5", stored, names=NAMES3, scores=scores)
    with pytest.warns(KeypointWarning, match="2 tracks"):
        kp = read_keypoints(path, fps=100, units="mm")
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    np.testing.assert_allclose(kp.confidence, scores[0].T)


def test_sleap_h5_2d_and_bad_shapes(tmp_path):
    flat = write_sleap_h5(tmp_path / "flat.h5", np.zeros((1, 2, 3, 15)), names=NAMES3)
    with pytest.raises(KeypointError, match=r"2D keypoints.*sleap-anipose"):
        read_keypoints(flat, fps=100, units="mm")
    flat3 = write_sleap_h5(tmp_path / "flat3.h5", np.zeros((15, 3, 2)))
    with pytest.raises(KeypointError, match="2D keypoints"):
        read_keypoints(flat3, fps=100, units="mm")
    odd = write_sleap_h5(tmp_path / "odd.h5", np.zeros((15, 4)))
    with pytest.raises(KeypointError, match=r"'tracks' has shape \(15, 4\)"):
        read_keypoints(odd, fps=100, units="mm")


def test_sleap_h5_mismatched_scores_are_ignored_with_warning(tmp_path):
    path = write_sleap_h5(tmp_path / "s.h5", points(15, 3), names=NAMES3, scores=np.ones((7, 2)))
    with pytest.warns(KeypointWarning, match="ignoring 'point_scores'"):
        kp = read_keypoints(path, fps=100, units="mm")
    np.testing.assert_array_equal(kp.confidence, 1.0)


# ---------------------------------------------------------------------------
# SLEAP .slp


def slp_labels(frames: int = 4):
    sio = pytest.importorskip("sleap_io")
    skeleton = sio.Skeleton(list(NAMES3))
    video = sio.Video(filename="fake.mp4", open_backend=False)
    rng = np.random.default_rng(5)
    lfs = [
        sio.LabeledFrame(
            video=video,
            frame_idx=t,
            instances=[sio.Instance.from_numpy(rng.uniform(size=(3, 2)) * 100, skeleton=skeleton)],
        )
        for t in range(frames)
    ]
    return sio, sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skeleton]), skeleton, video, lfs


def test_slp_with_2d_points_is_refused(tmp_path):
    sio, labels, *_ = slp_labels()
    path = tmp_path / "labels.slp"
    sio.save_slp(labels, str(path))
    with pytest.raises(KeypointError, match=r"\.slp file holds 2D keypoints.*Triangulate first.*sleap-anipose"):
        read_keypoints(path, fps=30, units="mm")


def test_slp_with_triangulated_3d_points(tmp_path):
    sio, labels, skeleton, video, lfs = slp_labels()
    from sleap_io.model.camera import Camera, CameraGroup, FrameGroup, InstanceGroup, RecordingSession
    from sleap_io.model.instance import PredictedInstance3D

    cam = Camera(name="cam0", rvec=np.zeros(3), tvec=np.zeros(3))
    session = RecordingSession(camera_group=CameraGroup(cameras=[cam]))
    session.add_video(video, cam)
    pos = points(4, 3)
    for t in (0, 1, 3):  # frame 2 has no 3D instance: it becomes an all-NaN frame
        group = InstanceGroup(
            instance_by_camera={cam: lfs[t].instances[0]},
            instance_3d=PredictedInstance3D(points=pos[t], skeleton=skeleton, point_scores=np.full(3, 0.5)),
        )
        session.frame_groups[t] = FrameGroup(
            frame_idx=t, instance_groups=[group], labeled_frame_by_camera={cam: lfs[t]}
        )
    labels.sessions.append(session)
    path = tmp_path / "labels3d.slp"
    sio.save_slp(labels, str(path))
    with pytest.warns(KeypointWarning, match="1 of 4 frames have no keypoints"):
        kp = read_keypoints(path, fps=30, units="mm")
    assert kp.names == NAMES3 and kp.num_frames == 4
    np.testing.assert_allclose(kp.positions[[0, 1, 3]], pos[[0, 1, 3]] / 1000.0)
    assert np.isnan(kp.positions[2]).all() and (kp.confidence[2] == 0).all()
    np.testing.assert_allclose(kp.confidence[[0, 1, 3]], 0.5)


# ---------------------------------------------------------------------------
# CSV: Anipose and DeepLabCut


def write_anipose(path: Path, pos: np.ndarray, names=NAMES3, scores=None, fnum=None) -> Path:
    header, cols = [], []
    for k, n in enumerate(names):
        for axis, c in zip("xyz", range(3), strict=True):
            header.append(f"{n}_{axis}")
            cols.append(pos[:, k, c])
        header += [f"{n}_error", f"{n}_ncams"]
        cols += [np.full(len(pos), 1.5), np.full(len(pos), 2.0)]
        if scores is not None:
            header.append(f"{n}_score")
            cols.append(scores[:, k])
    header += ["M_00", "center_0"]
    cols += [np.ones(len(pos)), np.zeros(len(pos))]
    if fnum is not None:
        header.append("fnum")
        cols.append(np.asarray(fnum, dtype=float))
    lines = [",".join(header)]
    for row in np.stack(cols, axis=1):
        lines.append(",".join("" if np.isnan(v) else repr(float(v)) for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_anipose_csv_values_units_and_scores(tmp_path):
    pos = points(10, 3)
    scores = np.random.default_rng(6).uniform(size=(10, 3))
    path = write_anipose(tmp_path / "pose-3d.csv", pos, scores=scores, fnum=np.arange(10))
    with pytest.warns(KeypointWarning, match="Anipose CSV files record no length unit; assuming millimetres"):
        kp = read_keypoints(path, fps=60)
    assert kp.names == NAMES3 and kp.source.startswith("csv:")
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    np.testing.assert_allclose(kp.confidence, scores)
    kp = read_keypoints(path, fps=60, units="cm")
    np.testing.assert_allclose(kp.positions, pos / 100.0)
    with pytest.raises(KeypointError, match=r"Anipose CSV files record no frame rate"):
        read_keypoints(path, units="mm")


def test_anipose_csv_nans_and_frame_gaps(tmp_path):
    pos = points(6, 3)
    pos[1, 0, 2] = np.nan  # one missing coordinate hides the whole point
    pos[4] = np.nan  # a frame with no keypoints
    path = write_anipose(tmp_path / "gaps.csv", pos, fnum=[10, 11, 12, 14, 15, 16])  # frame 13 was dropped
    with pytest.warns(KeypointWarning, match="2 of 7 frames have no keypoints"):
        kp = read_keypoints(path, fps=60, units="mm")
    assert kp.num_frames == 7
    assert np.isnan(kp.positions[1, 0]).all() and kp.confidence[1, 0] == 0
    assert kp.confidence[1, 1] == 1
    assert np.isnan(kp.positions[3]).all() and np.isnan(kp.positions[5]).all()
    np.testing.assert_allclose(kp.positions[6], pos[5] / 1000.0)


def write_dlc(path: Path, pos: np.ndarray, names=NAMES3, likelihood=None, coords="xyz", individuals=None):
    per = list(coords) + (["likelihood"] if likelihood is not None else [])
    animals = individuals or [None]
    scorer, ind_row, bp_row, co_row = ["scorer"], ["individuals"], ["bodyparts"], ["coords"]
    for a in animals:
        for n in names:
            for c in per:
                scorer.append("DLC_3D")
                ind_row.append(a or "")
                bp_row.append(n)
                co_row.append(c)
    rows = [scorer] + ([ind_row] if individuals else []) + [bp_row, co_row]
    for t in range(len(pos)):
        row = [str(t)]
        for _ in animals:
            for k in range(len(names)):
                row += [repr(float(pos[t, k, i])) for i in range(len(coords))]
                if likelihood is not None:
                    row.append(repr(float(likelihood[t, k])))
        rows.append(row)
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_dlc_3d_csv(tmp_path):
    pos = points(9, 3)
    lik = np.random.default_rng(7).uniform(size=(9, 3))
    path = write_dlc(tmp_path / "dlc3d.csv", pos, likelihood=lik)
    kp = read_keypoints(path, fps=30, units="mm")
    assert kp.names == NAMES3
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
    np.testing.assert_allclose(kp.confidence, lik)
    plain = write_dlc(tmp_path / "plain.csv", pos)
    kp = read_keypoints(plain, fps=30, units="m")
    np.testing.assert_allclose(kp.positions, pos)
    np.testing.assert_array_equal(kp.confidence, 1.0)


def test_dlc_multi_animal_reads_first_individual(tmp_path):
    pos = points(9, 3)
    path = write_dlc(tmp_path / "ma.csv", pos, individuals=["mouse1", "mouse2"])
    with pytest.warns(KeypointWarning, match="2 individuals"):
        kp = read_keypoints(path, fps=30, units="mm")
    np.testing.assert_allclose(kp.positions, pos / 1000.0)


def test_dlc_2d_csv_is_refused(tmp_path):
    path = write_dlc(tmp_path / "dlc2d.csv", points(9, 3), coords="xy", likelihood=np.ones((9, 3)))
    with pytest.raises(KeypointError, match=r"no 'z' coordinate: 2D output.*triangulate"):
        read_keypoints(path, fps=30, units="mm")


def test_bad_csvs(tmp_path):
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(KeypointError, match="not a keypoint CSV"):
        read_keypoints(unknown, fps=30, units="mm")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(KeypointError, match="empty"):
        read_keypoints(empty, fps=30, units="mm")
    words = tmp_path / "words.csv"
    words.write_text("a_x,a_y,a_z\n1,2,oops\n")
    with pytest.raises(KeypointError, match="not a number"):
        read_keypoints(words, fps=30, units="mm")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a_x,a_y,a_z\n1,2,3\n1,2\n")
    with pytest.raises(KeypointError, match="ragged"):
        read_keypoints(ragged, fps=30, units="mm")
    flat = tmp_path / "flat.csv"
    flat.write_text("a_x,a_y\n1,2\n")
    with pytest.raises(KeypointError, match="no '_z' column: 2D"):
        read_keypoints(flat, fps=30, units="mm")


# ---------------------------------------------------------------------------
# Bad input, NaNs, names, units


def test_missing_file_folder_and_unknown_extension(tmp_path):
    with pytest.raises(KeypointError, match="keypoint file not found"):
        read_keypoints(tmp_path / "nope.mat", fps=50)
    with pytest.raises(KeypointError, match="is a folder"):
        read_keypoints(tmp_path, fps=50)
    txt = tmp_path / "pose.txt"
    txt.write_text("1 2 3\n")
    with pytest.raises(KeypointError, match=r"unknown keypoint file type '.txt'.*format="):
        read_keypoints(txt, fps=50)


def test_hdf5_detection_and_unreadable_hdf5(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("something", data=np.zeros(3))
    with pytest.raises(KeypointError, match=r"none of the datasets mimic-mjx reads.*'something'"):
        read_keypoints(other, fps=50)
    dlc = tmp_path / "dlc.h5"
    with h5py.File(dlc, "w") as f:
        f.create_group("df_with_missing")
    with pytest.raises(KeypointError, match="DeepLabCut pandas HDF5"):
        read_keypoints(dlc, fps=50)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(KeypointError, match="cannot read .* as HDF5"):
        read_keypoints(broken, fps=50)
    pred73 = write_mat73(tmp_path / "pred73.h5", points(5, 4).transpose(0, 2, 1))
    assert read_keypoints(pred73, fps=50, names=list("abcd")).source.startswith("dannce:")


def test_bad_arguments(tmp_path):
    path = save_mat(tmp_path / "p.mat", pred=points(5, 4).transpose(0, 2, 1))
    with pytest.raises(KeypointError, match=r"unknown keypoint format 'dlc'; choose one of"):
        read_keypoints(path, format="dlc", fps=50)
    with pytest.raises(KeypointError, match=r"unknown length unit 'inch'"):
        read_keypoints(path, units="inch", fps=50)
    for bad in (0, -5, float("nan"), "fast"):
        with pytest.raises(KeypointError, match="frame rate must be"):
            read_keypoints(path, fps=bad)
    assert read_keypoints(path, fps="50", units="millimetres", names=list("abcd")).fps == 50.0
    with pytest.raises(KeypointError, match=r"cannot read .*p.mat as HDF5"):
        read_keypoints(path, format="nwb", fps=50)
    assert set(FORMATS) == {"dannce", "nwb", "sleap_h5", "slp", "csv", "mouse_arm_h5", "worm_skeleton"}


def test_names_count_mismatch_and_permutation(tmp_path):
    path = write_anipose(tmp_path / "a.csv", points(5, 3))
    with pytest.raises(KeypointError, match=r"2 keypoint names given for the file's 3 keypoints"):
        read_keypoints(path, fps=50, units="mm", names=["a", "b"])
    with pytest.raises(KeypointError, match=r"another order.*Keypoints.subset"):
        read_keypoints(path, fps=50, units="mm", names=["tail", "body", "head"])
    assert read_keypoints(path, fps=50, units="mm", names="x, y, z").names == ("x", "y", "z")
    with pytest.raises(KeypointError, match=r"names repeat: \['x'\]"):
        read_keypoints(path, fps=50, units="mm", names=["x", "x", "z"])


def test_all_nan_keypoint_and_file_are_refused(tmp_path):
    pos = points(6, 3)
    pos[:, 1] = np.nan
    path = write_anipose(tmp_path / "nan_kp.csv", pos)
    with pytest.raises(KeypointError, match=r"keypoint\(s\) \['body'\] are missing \(NaN\) in every frame"):
        read_keypoints(path, fps=50, units="mm")
    all_nan = save_mat(tmp_path / "nan.mat", pred=np.full((6, 3, 4), np.nan))
    with pytest.raises(KeypointError, match="every value is NaN"):
        read_keypoints(all_nan, fps=50, names=list("abcd"))


def test_infinite_values_are_refused(tmp_path):
    pos = points(6, 4)
    pos[2, 1, 0] = np.inf
    path = save_mat(tmp_path / "inf.mat", pred=pos.transpose(0, 2, 1))
    with pytest.raises(KeypointError, match=r"infinite coordinate.*frame 2 keypoint 'b'"):
        read_keypoints(path, fps=50, names=list("abcd"))


def test_confidence_out_of_range_is_clipped_with_warning(tmp_path):
    path = write_anipose(tmp_path / "s.csv", points(5, 3), scores=np.full((5, 3), 2.0))
    with pytest.warns(KeypointWarning, match="clipped to"):
        kp = read_keypoints(path, fps=50, units="mm")
    np.testing.assert_array_equal(kp.confidence, 1.0)


def test_mouse_arm_layout_errors(tmp_path):
    path = tmp_path / "arm.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kp_data", data=np.zeros((10, 9)))
        f.create_dataset("kp_names", data=np.array([b"a", b"b"]))
    with pytest.raises(KeypointError, match=r"'kp_names' lists 2 names but 'kp_data' holds 3"):
        read_keypoints(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("kp_data", data=np.zeros((10, 8)))
    with pytest.raises(KeypointError, match=r"'kp_data' has shape \(10, 8\)"):
        read_keypoints(path)


# ---------------------------------------------------------------------------
# The Keypoints object and size checks


def make_kp(pos_m: np.ndarray, names=NAMES3, **changes) -> Keypoints:
    fields = dict(
        positions=pos_m,
        names=tuple(names),
        fps=50.0,
        confidence=np.ones(pos_m.shape[:2]),
        source="test",
        edges=((0, 1), (1, 2)),
    )
    fields.update(changes)
    return Keypoints(**fields)


def test_subset_reorders_and_remaps_edges():
    kp = make_kp(points(5, 3) / 1000.0).validate()
    sub = kp.subset(["tail", "body"])
    assert sub.names == ("tail", "body") and sub.edges == ((1, 0),)
    np.testing.assert_array_equal(sub.positions, kp.positions[:, [2, 1]])
    with pytest.raises(KeypointError, match=r"no keypoint\(s\) \['nose'\]"):
        kp.subset(["nose"])
    with pytest.raises(KeypointError, match="repeat"):
        kp.subset(["head", "head"])


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(names=("a", "b")), "2 keypoint names for 3"),
        (dict(names=("a", "a", "b")), "names repeat"),
        (dict(fps=0.0), "positive number"),
        (dict(confidence=np.ones((5, 2))), "confidence has shape"),
        (dict(confidence=np.full((5, 3), 1.5)), r"lie in \[0, 1\]"),
        (dict(edges=((0, 3),)), r"edge \(0, 3\)"),
        (dict(positions=np.zeros((5, 3))), r"expected \(frames, keypoints, 3\)"),
    ],
)
def test_validate_names_the_problem(changes, message):
    with pytest.raises(KeypointError, match=message):
        make_kp(np.zeros((5, 3, 3)), **changes).validate()


def test_check_plausible_size():
    rng = np.random.default_rng(8)
    pos = rng.normal(scale=0.05, size=(40, 3, 3))
    kp = make_kp(pos, input_units="m").validate()
    extent = body_extent(kp)
    assert 0.05 < extent < 0.5
    assert check_plausible_size(kp, extent) == extent
    big = make_kp(pos * 1000, input_units="m").validate()  # millimetres read as metres
    with pytest.raises(KeypointError, match=r"1000x larger.*read as metres but look like millimetres.*--units mm"):
        check_plausible_size(big, extent, body="the test animal")
    small = make_kp(pos / 100, input_units="cm").validate()  # metres read as centimetres
    with pytest.raises(KeypointError, match=r"100x smaller.*pass units='m'"):
        check_plausible_size(small, extent)
    huge = make_kp(pos * 1e8, input_units="m").validate()
    with pytest.raises(KeypointError, match="No length unit explains this"):
        check_plausible_size(huge, extent)
    single = make_kp(pos[:, :1], names=("a",), edges=()).validate()
    assert np.isnan(check_plausible_size(single, 0.1))  # nothing to measure with one keypoint
    with pytest.raises(ValueError):
        check_plausible_size(kp, 0.0)


def test_keypoint_error_is_a_mimic_error():
    assert issubclass(KeypointError, MimicError)


def test_nwb_multi_camera_pose_estimation_reads_its_3d_series(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    ndx_pose = pytest.importorskip("ndx_pose")
    nwb = pynwb.NWBFile(
        session_description="test",
        identifier="test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    )
    behavior = nwb.create_processing_module("behavior", "behaviour")
    skeleton = ndx_pose.Skeleton(name="animal", nodes=list(NAMES3), edges=np.array([[0, 2]], dtype="uint8"))
    behavior.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    pos = points(20, 3)
    stamps = np.arange(20) / 120.0

    def series(data, unit):
        return [
            ndx_pose.PoseEstimationSeries(
                name=n, data=data[:, k], unit=unit, reference_frame="arena", timestamps=stamps
            )
            for k, n in enumerate(NAMES3)
        ]

    camera = ndx_pose.PoseEstimation(
        name="cam0", pose_estimation_series=series(pos[:, :, :2] * 10, "pixels"), skeleton=skeleton
    )
    behavior.add(
        ndx_pose.MultiCameraPoseEstimation(
            name="triangulated", pose_estimation_series=series(pos, "mm"), pose_estimations=[camera], skeleton=skeleton
        )
    )
    path = tmp_path / "multi.nwb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    kp = read_keypoints(path)
    assert kp.names == NAMES3 and kp.edges == ((0, 2),)
    assert kp.fps == 120.0  # from the timestamps
    np.testing.assert_allclose(kp.positions, pos / 1000.0)


def test_nwb_series_without_unit_or_timing(tmp_path):
    path = tmp_path / "bare.nwb"
    pos = points(10, 2)
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        pe = f.create_group("processing/behavior/pose")
        pe.attrs["neurodata_type"] = "PoseEstimation"
        for k, n in enumerate(("a", "b")):
            s = pe.create_group(n)
            s.attrs["neurodata_type"] = "PoseEstimationSeries"
            s.create_dataset("data", data=pos[:, k])
    with pytest.raises(KeypointError, match=r"its PoseEstimationSeries record no frame rate"):
        read_keypoints(path)
    with pytest.warns(KeypointWarning, match="record no length unit; assuming millimetres") as record:
        kp = read_keypoints(path, fps=50)
    assert record[0].filename == __file__  # the warning points at the caller, not at the reader's internals
    assert kp.names == ("a", "b")  # no skeleton: HDF5 order
    np.testing.assert_allclose(kp.positions, pos / 1000.0)
