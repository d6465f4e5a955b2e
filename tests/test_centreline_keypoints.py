"""Worm-tracker centrelines: Tierpsy skeleton HDF5 and .npy arrays, named on the 49-point map, registered in 2-D."""

from __future__ import annotations

import h5py
import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.data.keypoints import UNIT_SCALE, KeypointWarning, read_keypoints
from mimic_mjx.errors import KeypointError
from mimic_mjx.registration.register import register
from mimic_mjx.registration.stac import StacConfig

VALID = (2, 3, 4, 5, 7, 9, 13, 17, 25, 49)


def centreline(frames: int, points: int, length_um: float = 1000.0, seed: int = 0) -> np.ndarray:
    """(frames, points, 2) micrometres: a wavy worm crawling along x."""
    s = np.linspace(0.0, length_um, points)
    t = np.arange(frames)[:, None]
    x = s[None] + 5.0 * t
    y = 60.0 * np.sin(2 * np.pi * s[None] / length_um - 0.3 * t) + np.random.default_rng(seed).normal(0, 1, (1, 1))
    return np.stack([x, y + 0 * x], axis=-1)


def write_tierpsy(path, skeletons, *, fps=25.0, xy_units="microns", time_units="seconds", worms=None):
    """A features file in Tierpsy's layout: /coordinates/skeletons plus tables carrying the metadata."""
    rows = skeletons.shape[0]
    with h5py.File(path, "w") as f:
        f.create_dataset("coordinates/skeletons", data=skeletons.astype(np.float32))
        table = np.zeros(rows, dtype=[("worm_index", "i4"), ("timestamp", "i4"), ("skeleton_id", "i4")])
        if worms is None:
            table["worm_index"], table["timestamp"] = 1, np.arange(rows)
        else:
            table["worm_index"], table["timestamp"] = worms
        table["skeleton_id"] = np.arange(rows)
        f.create_dataset("timeseries_data", data=table)
        traj = f.create_dataset("trajectories_data", data=table)
        if fps is not None:
            traj.attrs["fps"] = fps
            traj.attrs["expected_fps"] = fps
        if xy_units is not None:
            traj.attrs["xy_units"] = xy_units
        traj.attrs["time_units"] = time_units
        traj.attrs["microns_per_pixel"] = 10.0
    return path


def test_tierpsy_49_points(tmp_path):
    sk = centreline(6, 49)
    kp = read_keypoints(write_tierpsy(tmp_path / "w_featuresN.hdf5", sk))
    assert kp.names == tuple(f"cl{k:02d}" for k in range(49))
    assert kp.source.startswith("worm_skeleton:") and kp.fps == 25.0 and kp.input_units == "um"
    assert kp.planar and kp.positions.shape == (6, 49, 3)
    # micrometres to metres exactly as value / 1e6, z = 0
    np.testing.assert_array_equal(kp.positions[..., :2], sk.astype(np.float32).astype(np.float64) / 1e6)
    assert (kp.positions[..., 2] == 0).all()
    assert kp.edges == tuple((k, k + 1) for k in range(48))
    sub = kp.subset(["cl00", "cl24", "cl48"])
    assert sub.planar and sub.edges == ()


def test_13_points_land_on_every_fourth(tmp_path):
    kp = read_keypoints(write_tierpsy(tmp_path / "w.h5", centreline(4, 13)))
    assert kp.names == tuple(f"cl{4 * k:02d}" for k in range(13))


@pytest.mark.parametrize("count", VALID)
def test_every_divisor_count_is_named(tmp_path, count):
    path = tmp_path / "c.npy"
    np.save(path, centreline(3, count))
    kp = read_keypoints(path, fps=10, units="um")
    step = 48 // (count - 1)
    assert kp.names[0] == "cl00" and kp.names[-1] == "cl48" and kp.names[1] == f"cl{step:02d}"


def test_12_points_are_refused_naming_the_map(tmp_path):
    path = write_tierpsy(tmp_path / "w.hdf5", centreline(4, 12))
    with pytest.raises(KeypointError) as info:
        read_keypoints(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "holds 12 centreline points" in msg and "49 points" in msg
    assert "2, 3, 4, 5, 7, 9, 13, 17, 25, 49" in msg and "resample" in msg
    # names= still overrides
    kp = read_keypoints(path, names=[f"p{k}" for k in range(12)])
    assert kp.names[0] == "p0" and kp.planar


def test_nan_frames_are_missing(tmp_path):
    sk = centreline(6, 49)
    sk[2] = np.nan  # not skeletonised
    with pytest.warns(KeypointWarning, match="1 of 6 frames have no keypoints"):
        kp = read_keypoints(write_tierpsy(tmp_path / "w.hdf5", sk))
    assert np.isnan(kp.positions[2]).all() and (kp.confidence[2] == 0).all()
    assert np.isfinite(kp.positions[[0, 1, 3, 4, 5]]).all() and (kp.confidence[3] == 1).all()


def test_units_override_and_default(tmp_path):
    sk = centreline(3, 49)
    path = write_tierpsy(tmp_path / "w.hdf5", sk)
    with pytest.warns(KeypointWarning, match="overridden by units='mm'"):
        kp = read_keypoints(path, units="mm")
    np.testing.assert_array_equal(kp.positions[..., :2], sk.astype(np.float32).astype(np.float64) / 1e3)
    for alias in ("um", "µm", "microns", "micrometres", "Micrometers"):
        assert read_keypoints(path, units=alias).input_units == "um"
    assert UNIT_SCALE["um"] == 1e-6
    bare = write_tierpsy(tmp_path / "bare.hdf5", sk, xy_units=None)
    with pytest.warns(KeypointWarning, match="record no length unit; assuming micrometres"):
        assert read_keypoints(bare).input_units == "um"
    pixels = write_tierpsy(tmp_path / "px.hdf5", sk, xy_units="pixels")
    with pytest.raises(KeypointError, match=r"unit as 'pixels', not a length unit"):
        read_keypoints(pixels)


def test_missing_fps_asks_for_it(tmp_path):
    sk = centreline(3, 49)
    for path in (
        write_tierpsy(tmp_path / "none.hdf5", sk, fps=None),
        write_tierpsy(tmp_path / "frames.hdf5", sk, fps=1.0, time_units="frames"),  # analysed without a rate
    ):
        with pytest.raises(KeypointError, match=r"no frame rate; pass .*--fps"):
            read_keypoints(path)
        assert read_keypoints(path, fps=30).fps == 30.0


def test_several_worms_read_the_best_one_at_its_timestamps(tmp_path):
    a, b = centreline(5, 49), centreline(3, 49, seed=1)
    sk = np.concatenate([b, a])
    worms = (np.array([7] * 3 + [3] * 5), np.array([10, 11, 12, 20, 21, 23, 24, 25]))
    with pytest.warns(KeypointWarning, match="holds 2 worms; reading worm 3"):
        kp = read_keypoints(write_tierpsy(tmp_path / "w.hdf5", sk, worms=worms))
    assert kp.num_frames == 6 and np.isnan(kp.positions[2]).all()  # timestamp 22 was dropped
    np.testing.assert_allclose(kp.positions[3, :, :2], a[2].astype(np.float32) / 1e6)


def test_npy_2d_and_3d(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, centreline(4, 49))
    with pytest.raises(KeypointError, match="no frame rate"):
        read_keypoints(path)
    with pytest.warns(KeypointWarning, match="assuming micrometres"):
        kp = read_keypoints(path, fps=20)
    assert kp.planar and kp.source.startswith("worm_skeleton:")
    three = np.concatenate([centreline(4, 25), np.full((4, 25, 1), 40.0)], axis=-1)
    np.save(path, three)
    kp = read_keypoints(path, fps=20, units="um")
    assert not kp.planar and kp.names[1] == "cl02" and np.allclose(kp.positions[..., 2], 40e-6)
    np.save(path, np.zeros((4, 49)))
    with pytest.raises(KeypointError, match=r"shape \(4, 49\); expected \(frames, points, 2\)"):
        read_keypoints(path, fps=20, units="um")


def test_other_hdf5_is_not_taken_for_a_worm(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["nothing"] = np.zeros(3)
    with pytest.raises(KeypointError, match="'coordinates/skeletons' for Tierpsy"):
        read_keypoints(path, fps=10)
    with pytest.raises(KeypointError, match="no '/coordinates/skeletons' dataset"):
        read_keypoints(path, fps=10, format="worm_skeleton")


# ---------------------------------------------------------------------------
# Registration of a 2-D centreline on a small worm-like body

SEGMENTS, SEG, RADIUS = 6, 1e-3 / 6, 4e-5  # a 1 mm worm of six capsules, in metres


def worm_xml() -> str:
    """Six capsules in a chain, hinges about z (bending in the plate), a free root on the head segment."""
    inner = ""
    for k in reversed(range(1, SEGMENTS)):
        inner = (
            f'<body name="seg{k}" pos="{SEG} 0 0"><joint name="j{k}" axis="0 0 1" range="-0.8 0.8"/>'
            f'<geom type="capsule" fromto="0 0 0 {SEG} 0 0" size="{RADIUS}"/>{inner}</body>'
        )
    return f"""<mujoco model="miniworm">
  <compiler angle="radian"/>
  <default><geom density="1e9"/></default>  <!-- registration is kinematic; heavy enough to compile -->
  <worldbody>
    <geom name="floor" type="plane" size="0.01 0.01 0.001"/>
    <body name="seg0" pos="0 0 {RADIUS}"><freejoint name="root"/>
      <geom type="capsule" fromto="0 0 0 {SEG} 0 0" size="{RADIUS}"/>{inner}</body>
  </worldbody>
</mujoco>
"""


def worm_files(tmp_path):
    """The body file: cl00..cl48 evenly spaced along the chain, eight per segment."""
    (tmp_path / "miniworm.xml").write_text(worm_xml())
    lines = ["name: miniworm", "mjcf: miniworm.xml", "actuation: torque", "keypoints:"]
    for k in range(49):
        seg = min(k // 8, SEGMENTS - 1)
        lines.append(f"  cl{k:02d}: {{body: seg{seg}, offset: [{k * SEGMENTS * SEG / 48 - seg * SEG:.12g}, 0, 0]}}")
    (tmp_path / "miniworm.yaml").write_text("\n".join(lines) + "\n")
    return tmp_path / "miniworm.yaml"


def test_register_planar_centreline_on_a_worm(tmp_path):
    yaml = worm_files(tmp_path)
    body = get_body(yaml)
    model = body.compile()
    data = mujoco.MjData(model)
    kmap = body.keypoint_map
    frames = 8
    rest_z = float(model.qpos0[2])
    truth = np.tile(model.qpos0, (frames, 1))
    t = np.arange(frames)
    truth[:, 0] += 2e-5 * t  # crawling along x, turning slowly, bending in a travelling wave
    yaw = 0.4 + 0.05 * t
    truth[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
    for j in range(1, SEGMENTS):
        truth[:, model.jnt_qposadr[j]] = 0.5 * np.sin(1.1 * j - 0.4 * t)
    pts = np.zeros((frames, 49, 3))
    for i, q in enumerate(truth):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        for k, (b, off) in enumerate(kmap.keypoints.values()):
            bid = model.body(b).id
            pts[i, k] = data.xpos[bid] + data.xmat[bid].reshape(3, 3) @ np.asarray(off)
    assert np.allclose(pts[..., 2], rest_z)  # the bending worm stays on the plate
    path = write_tierpsy(tmp_path / "w.hdf5", 1e6 * pts[..., :2])  # what the camera saw, micrometres
    kp = read_keypoints(path)
    assert kp.planar and (kp.positions[..., 2] == 0).all()
    logs = []
    # StacConfig's priors are in metres sized for rodents (2 mm per rad of roughness, 5 mm levers); scaled to 1 mm
    cfg = StacConfig(
        rounds=1, lm_iterations=20, smooth_m_per_rad=2e-6, velocity_m_per_rad_s=1e-8, observable_lever_m=5e-6
    )
    reg = register(kp, str(yaml), cfg, log=logs.append)
    assert any("2-D keypoints; each keypoint's z set to its marker's height" in m for m in logs)
    length = SEGMENTS * SEG
    assert reg.summary["median_residual_mm"] < 1e-3 * length * 1e3, reg.summary["median_residual_mm"]
    assert np.nanpercentile(reg.clip.keypoint_residuals, 95) < 5e-3 * length
    np.testing.assert_allclose(reg.clip.qpos[:, 2], rest_z, atol=0.1 * RADIUS)  # root on the plate
    np.testing.assert_allclose(reg.clip.keypoints[..., 2], rest_z, rtol=1e-5)
    # the recovered body lies in the plate: every segment's centre at the plate height
    assert np.abs(reg.clip.xpos[:, 1:, 2] - rest_z).max() < 0.1 * RADIUS
