"""Fuzz-style hostile input for every reader: clips, keypoints in each format, configs, CLI counts.

Every case ends in a ``MimicError`` with a one-line message, or in a documented
acceptance (marked ``ok``); never a traceback, never a hang (a 20 s alarm), and
never a silent change of meaning (rows dropped, a default standing in for 0).
"""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.cli.main import build_parser
from mimic_mjx.data.clips import Clip, read_clip_files, read_clips, write_clips
from mimic_mjx.data.keypoints import read_keypoints
from mimic_mjx.errors import ClipError, ConfigError, KeypointError, MimicError

NAMES = ("head", "body", "tail")
T = 12


@pytest.fixture(autouse=True)
def no_hang():
    def timeout(signum, frame):
        raise TimeoutError("a reader hung for 20 s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def outcome(fn) -> str:
    """'error' for a clean MimicError (one line), 'ok' for success; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except MimicError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"not a one-line message: {message!r}"
            assert "Traceback" not in message
            return "error"
    return "ok"


def pos_mm(frames: int = T) -> np.ndarray:
    rng = np.random.default_rng(0)
    return 50.0 + 10.0 * rng.standard_normal((frames, len(NAMES), 3))


# ---------------------------------------------------------------------------
# Valid files of each kind (as small as the readers accept)


def make_clip(frames: int = T, fps: float = 100.0) -> Clip:
    t = np.linspace(0, 1, frames, dtype=np.float32)
    qpos = np.stack([np.sin(t), np.cos(t)], axis=1).astype(np.float32)
    return Clip(name="a", body="mouse_forelimb", fps=fps, joint_names=("j0", "j1"), qpos=qpos, qvel=qpos * 0)


def clip_file(path: Path) -> Path:
    write_clips(path, [make_clip(400)])
    return path


def dannce_file(path: Path, pred=None) -> Path:
    import scipy.io

    scipy.io.savemat(path, {"pred": pos_mm().transpose(0, 2, 1) if pred is None else pred})
    return path


def sleap_file(path: Path, tracks=None) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("tracks", data=pos_mm()[:, None] if tracks is None else tracks)
        f.create_dataset("node_names", data=np.array(NAMES, dtype="S"))
    return path


def mouse_arm_file(path: Path, kp=None) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("kp_data", data=pos_mm().reshape(T, -1) / 1000 if kp is None else kp)
        f.create_dataset("kp_names", data=np.array(NAMES, dtype="S"))
    return path


def nwb_file(path: Path, data=None, rate: float = 100.0) -> Path:
    """The ndx-pose layout the reader walks, written with h5py alone."""
    pos = pos_mm()
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        pose = f.create_group("processing/behavior/pose")
        pose.attrs["neurodata_type"] = "PoseEstimation"
        for k, name in enumerate(NAMES):
            s = pose.create_group(name)
            s.attrs["neurodata_type"] = "PoseEstimationSeries"
            d = s.create_dataset("data", data=pos[:, k] if data is None else data)
            d.attrs["unit"] = "mm"
            s.create_dataset("starting_time", data=0.0).attrs["rate"] = rate
    return path


def csv_text(pos: np.ndarray, blank_rows=(), fnum: bool = False) -> str:
    header = [f"{n}_{a}" for n in NAMES for a in "xyz"] + (["fnum"] if fnum else [])
    lines = [",".join(header)]
    for t, row in enumerate(pos.reshape(len(pos), -1)):
        cells = [repr(float(v)) for v in row] + ([str(t)] if fnum else [])
        lines.append("," * (len(header) - 1) if t in blank_rows else ",".join(cells))
    return "\n".join(lines) + "\n"


def csv_file(path: Path) -> Path:
    path.write_text(csv_text(pos_mm()))
    return path


def config_file(path: Path) -> Path:
    path.write_text("name: tiny\nppo:\n  num_envs: 8\n  num_minibatches: 2\n")
    return path


def read_kp(path: Path):
    return read_keypoints(path, fps=50, units="mm")


# kind -> (file name, writer of a valid file, reader)
KINDS = {
    "clip": ("clips.h5", clip_file, read_clips),
    "dannce": ("pred.mat", dannce_file, read_kp),
    "nwb": ("pose.nwb", nwb_file, read_kp),
    "sleap": ("points3d.h5", sleap_file, read_kp),
    "mouse_arm": ("arm.h5", mouse_arm_file, read_kp),
    "csv": ("pose-3d.csv", csv_file, read_kp),
    "config": ("exp.yaml", config_file, config_lib.load),
}


# ---------------------------------------------------------------------------
# Damage that applies to any file


def _missing(p: Path) -> None:
    pass


def _folder(p: Path) -> None:
    p.mkdir()


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(1).bytes(4096))


def _symlink_loop(p: Path) -> None:
    os.symlink(p, p)


DAMAGE = {"missing": _missing, "folder": _folder, "empty": _empty, "fifo": _fifo, "random": _random}
DAMAGE["symlink_loop"] = _symlink_loop


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_unusable_file_is_a_clear_error(tmp_path, kind, damage):
    name, _, reader = KINDS[kind]
    path = tmp_path / name
    DAMAGE[damage](path)
    if kind == "config" and damage == "empty":
        # Accepted on purpose (config.load): an empty file, or one of comments only, is all defaults.
        assert outcome(lambda: reader(path)) == "ok"
        return
    assert outcome(lambda: reader(path)) == "error"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_valid_files_read(tmp_path, kind):
    name, write, reader = KINDS[kind]
    assert outcome(lambda: reader(write(tmp_path / name))) == "ok"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_file(tmp_path, kind, fraction):
    name, write, reader = KINDS[kind]
    path = write(tmp_path / name)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    result = outcome(lambda: reader(path))
    if kind not in ("csv", "config"):  # text cut at a line end can still be a valid table or config
        assert result == "error"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("seed", range(6))
def test_corrupted_bytes(tmp_path, kind, seed):
    """Flipped bytes: a clean error, or (formats without checksums) values read as they now are."""
    name, write, reader = KINDS[kind]
    path = write(tmp_path / name)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
    data[start : start + 16] = rng.bytes(16)
    path.write_bytes(bytes(data))
    outcome(lambda: reader(path))


@pytest.mark.parametrize("which", ["qpos", "qvel"])
def test_damaged_clip_data_block_fails_its_checksum(tmp_path, which):
    path = clip_file(tmp_path / "clips.h5")
    with h5py.File(path, "r") as f:
        ds = f[f"clips/a/{which}"]
        info = ds.id.get_chunk_info(0)
        offset, size = info.byte_offset, info.size
    data = bytearray(path.read_bytes())
    for i in range(offset + size // 3, offset + size // 3 + 8):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(ClipError, match="damaged or unreadable clip file"):
        read_clips(path)


# ---------------------------------------------------------------------------
# Clips: wrong dtypes, shapes and absurd values


def _edit_clip(path: Path, edit) -> Path:
    clip_file(path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(key, data):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=data)

    return edit


def _set_fps(value):
    def edit(f):
        f["clips/a"].attrs["fps"] = value

    return edit


CLIP_EDITS = {
    "qpos_strings": _replace("clips/a/qpos", np.array([[b"0.1", b"0.2"]] * 400)),
    "qpos_3d": _replace("clips/a/qpos", np.zeros((400, 2, 2), np.float32)),
    "qpos_one_column": _replace("clips/a/qpos", np.zeros((400, 1), np.float32)),
    "qpos_nan": _replace("clips/a/qpos", np.full((400, 2), np.nan, np.float32)),
    "qpos_1e30": _replace("clips/a/qpos", np.full((400, 2), 1e30, np.float32)),
    "qpos_one_frame": _replace("clips/a/qpos", np.zeros((1, 2), np.float32)),
    "qpos_compound": _replace("clips/a/qpos", np.zeros(400, dtype=[("a", "f4"), ("b", "f4")])),
    "joint_names_numbers": _replace("joint_names", np.array([1, 2])),
    "fps_zero": _set_fps(0.0),
    "fps_negative": _set_fps(-1.0),
    "fps_1e9": _set_fps(1e9),
    "fps_text": _set_fps("fast"),
    "fps_array": _set_fps(np.array([100.0, 200.0])),
    "body_number": lambda f: f.attrs.__setitem__("body", 3),
    "clips_a_dataset": _replace("clips", np.zeros(3)),
    "clip_a_dataset": _replace("clips/a", np.zeros(3)),
    "format_array": lambda f: f.attrs.__setitem__("format", np.array([1, 2])),
}


@pytest.mark.parametrize("edit", sorted(CLIP_EDITS))
def test_bad_clip_contents(tmp_path, edit):
    path = _edit_clip(tmp_path / "clips.h5", CLIP_EDITS[edit])
    assert outcome(lambda: read_clip_files([path])) == "error"


@pytest.mark.parametrize("fps", [0.0, -1.0, 0.5, 1e9, float("nan"), float("inf")])
def test_absurd_frame_rate_override_of_registration_files(tmp_path, fps):
    path = tmp_path / "reg.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("qpos", data=np.zeros((10, 2), np.float32))
        f.create_dataset("names_qpos", data=np.array([b"a", b"b"]))
    assert outcome(lambda: read_clips(path, fps=fps)) == "error"
    assert outcome(lambda: read_clips(path, fps=100.0)) == "ok"


# ---------------------------------------------------------------------------
# Keypoints: wrong dtypes, shapes and absurd values, per format


KEYPOINT_CASES = {
    "sleap_strings": lambda p: sleap_file(p.with_suffix(".h5"), np.array([[[[b"1.0"] * 3] * 3]] * T)),
    "sleap_nan": lambda p: sleap_file(p.with_suffix(".h5"), np.full((T, 1, 3, 3), np.nan)),
    "sleap_inf": lambda p: sleap_file(p.with_suffix(".h5"), np.full((T, 1, 3, 3), np.inf)),
    "sleap_1e30": lambda p: sleap_file(p.with_suffix(".h5"), np.full((T, 1, 3, 3), 1e30)),
    "sleap_one_frame": lambda p: sleap_file(p.with_suffix(".h5"), pos_mm(1)[:, None]),
    "sleap_zero_frames": lambda p: sleap_file(p.with_suffix(".h5"), np.zeros((0, 1, 3, 3))),
    "sleap_scalar": lambda p: sleap_file(p.with_suffix(".h5"), np.float64(3.0)),
    "mouse_arm_strings": lambda p: mouse_arm_file(p.with_suffix(".h5"), np.array([[b"x"] * 9] * T)),
    "mouse_arm_shape": lambda p: mouse_arm_file(p.with_suffix(".h5"), np.zeros((T, 7))),
    "dannce_strings": lambda p: dannce_file(p.with_suffix(".mat"), np.array([["a", "b"]])),
    "dannce_shape": lambda p: dannce_file(p.with_suffix(".mat"), np.zeros((T, 5, 5))),
    "dannce_empty_mat": lambda p: _empty_mat(p.with_suffix(".mat")),
    "nwb_strings": lambda p: nwb_file(p.with_suffix(".nwb"), np.array([[b"1", b"2", b"3"]] * T)),
    "nwb_rate_1e9": lambda p: nwb_file(p.with_suffix(".nwb"), rate=1e9),
    "nwb_rate_negative": lambda p: nwb_file(p.with_suffix(".nwb"), rate=-5.0),
}


def _empty_mat(path: Path) -> Path:
    import scipy.io

    scipy.io.savemat(path, {})
    return path


@pytest.mark.parametrize("case", sorted(KEYPOINT_CASES))
def test_bad_keypoint_contents(tmp_path, case):
    path = KEYPOINT_CASES[case](tmp_path / "kp")
    # NWB rates come from the file, so read those without an override.
    fps = None if case.startswith("nwb_rate") else 50
    assert outcome(lambda: read_keypoints(path, fps=fps, units="mm")) == "error"


@pytest.mark.parametrize("fps", [0, -1, 0.5, 1e9, float("nan"), float("inf"), "fast"])
def test_absurd_keypoint_frame_rate_override(tmp_path, fps):
    path = sleap_file(tmp_path / "p.h5")
    with pytest.raises(KeypointError, match="frame rate"):
        read_keypoints(path, fps=fps, units="mm")


def test_csv_header_only(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(",".join(f"{n}_{a}" for n in NAMES for a in "xyz") + "\n")
    with pytest.raises(KeypointError, match="header but no data rows"):
        read_kp(path)


def test_csv_without_frame_column_keeps_empty_rows_as_missing_frames(tmp_path):
    pos = pos_mm()
    path = tmp_path / "gaps.csv"
    path.write_text(csv_text(pos, blank_rows=(3, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kp = read_kp(path)
    assert kp.num_frames == T  # not T - 2: later frames keep their times
    assert np.isnan(kp.positions[3:5]).all()
    np.testing.assert_allclose(kp.positions[5:], pos[5:] / 1000)


def test_csv_without_frame_column_refuses_an_empty_line(tmp_path):
    lines = csv_text(pos_mm()).splitlines()
    path = tmp_path / "blank.csv"
    path.write_text("\n".join(lines[:4] + [""] + lines[4:]) + "\n\n")  # trailing blank lines are harmless
    with pytest.raises(KeypointError, match=r"line 5 is empty.*shift later frames"):
        read_kp(path)


def test_csv_with_frame_column_places_rows_by_number(tmp_path):
    pos = pos_mm()
    lines = csv_text(pos, fnum=True).splitlines()
    path = tmp_path / "numbered.csv"
    path.write_text("\n".join(lines[:4] + [""] + lines[4:]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kp = read_kp(path)
    np.testing.assert_allclose(kp.positions, pos / 1000)


@pytest.mark.parametrize(
    "text",
    [
        "a_x,a_y,a_z\n1,2,3\n1,2,x\n",  # not a number
        "a_x,a_y,a_z,fnum\n1,2,3,0\n1,2,3,1e12\n",  # absurd frame number
        "a_x,a_y,a_z\n1,2,3\n\x00\x01,2,3\n",  # NUL bytes
    ],
)
def test_bad_csv_cells(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert outcome(lambda: read_kp(path)) == "error"


def test_binary_csv(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a_x,a_y,a_z\n" + bytes(range(256)) * 4)
    assert outcome(lambda: read_kp(path)) == "error"


# ---------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00binary",
        bytes(range(256)),
        b"- a\n- b\n",
        b"0\n",
        b"false\n",
        b"just a string\n",
        b"ppo: [1, 2\n",
        b"ppo:\n  num_envs: 100000000000\n",
        b"ppo:\n  num_envs: 1.0e30\n",
        b"ppo:\n  num_envs: 0\n",
        b"ppo:\n  num_envs: -3\n",
        b"ppo:\n  learning_rate: .nan\n",
        b"ppo:\n  num_envs: '8'\n",
        b"env: 3\n",
        b"a: &a [*a]\n",
        b"[" * 5000,
    ],
)
def test_bad_config(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        config_lib.load(path)
    assert outcome(lambda: config_lib.load(path)) == "error"


# ---------------------------------------------------------------------------
# CLI counts: rejected as parsed, never replaced by a default


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--num-envs", "0"],
        ["bench", "--num-envs", "-4"],
        ["bench", "--num-envs", "1e3"],
        ["bench", "--substeps", "0"],
        ["bench", "--threads", "-1"],
        ["bench", "--updates", "0"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--clip-length", "0"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--clip-length", "1"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--fps", "0"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--fps", "-1"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--fps", "1e9"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--fps", "nan"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--rounds", "0"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--iterations", "0"],
        ["register", "--body", "rat", "--keypoints", "k.mat", "--out", "o.h5", "--min-confidence", "2"],
        ["clips", "check", "c.h5", "--max-speed", "-1"],
    ],
)
def test_cli_counts_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mimic ") and "error: argument" in err and "expected" in err


def test_cli_accepts_plausible_values():
    args = build_parser().parse_args(["bench", "--num-envs", "4", "--substeps", "2", "--threads", "0"])
    assert (args.num_envs, args.substeps, args.threads) == (4, 2, 0)
    args = build_parser().parse_args(
        ["register", "--body", "rat", "--keypoints", "k", "--out", "o", "--fps", "300", "--clip-length", "2"]
    )
    assert (args.fps, args.clip_length) == (300.0, 2)


def test_bench_passes_explicit_values_through(monkeypatch):
    """--threads 0 is 'all cores', set explicitly rather than skipped in favour of the config's value."""
    import mimic_mjx.training.bench as bench_mod
    from mimic_mjx.cli import main as cli

    seen = {}

    def fake_bench(cfg, clips, **kwargs):
        seen.update(threads=cfg.env.native_threads, envs=cfg.ppo.num_envs, substeps=cfg.env.substeps)
        return {}

    monkeypatch.setattr(bench_mod, "bench", fake_bench)
    argv = ["bench", "--body", "mouse_forelimb", "--num-envs", "16", "--substeps", "3", "--threads", "0"]
    argv += ["--set", "env.native_threads=4", "ppo.num_minibatches=2"]
    assert cli.main(argv) == 0
    assert seen == {"threads": 4, "envs": 16, "substeps": 3}  # --set comes last and wins
    argv = ["bench", "--body", "mouse_forelimb", "--num-envs", "16", "--threads", "0", "--set", "ppo.num_minibatches=2"]
    assert cli.main(argv) == 0
    assert seen["threads"] == 0


# ---------------------------------------------------------------------------
# Every per-clip dataset checked against the others where the file is read (issue 20: a wrong-shaped
# marker_offsets reached `mimic train` and ended in a NumPy broadcast error)


def full_clip_file(path: Path) -> Path:
    """A clip with every optional dataset: body poses, keypoints, marker offsets, residuals."""
    import dataclasses

    from mimic_mjx.data.synthetic import make_reaching_clips

    clip = make_reaching_clips(1, seed=0, num_frames=20)[0]
    K = len(clip.keypoint_names)
    write_clips(path, [dataclasses.replace(clip, keypoint_residuals=np.zeros((20, K), np.float32))])
    return path


def _clip_key(f: h5py.File, key: str) -> str:
    return f"clips/{next(iter(f['clips']))}/{key}"


def _reshape(key: str, shape_of):
    def edit(f):
        old = f[_clip_key(f, key)]
        shape = shape_of(old.shape)
        del f[_clip_key(f, key)]
        f.create_dataset(_clip_key(f, key), data=np.zeros(shape, np.float32))

    return edit


def _delete(key: str):
    return lambda f: f.__delitem__(_clip_key(f, key) if key not in f else key)


FULL_CLIP_EDITS = {
    "offsets_extra_keypoint": _reshape("marker_offsets", lambda s: (s[0] + 2, 3)),
    "offsets_flat": _reshape("marker_offsets", lambda s: (s[0] * 3,)),
    "offsets_xy": _reshape("marker_offsets", lambda s: (s[0], 2)),
    "offsets_per_frame": _reshape("marker_offsets", lambda s: (20, s[0], 3)),
    "offsets_nan": lambda f: f[_clip_key(f, "marker_offsets")].__setitem__((0, 0), np.nan),
    "offsets_without_names": _delete("keypoint_names"),
    "residuals_short": _reshape("keypoint_residuals", lambda s: (s[0] - 1, s[1])),
    "residuals_other_keypoints": _reshape("keypoint_residuals", lambda s: (s[0], s[1] + 1)),
    "keypoints_other_count": _reshape("keypoints", lambda s: (s[0], s[1] - 1, 3)),
    "keypoints_short": _reshape("keypoints", lambda s: (s[0] - 3, s[1], 3)),
    "keypoints_inf": lambda f: f[_clip_key(f, "keypoints")].__setitem__((0, 0, 0), np.inf),
    "xpos_long": _reshape("xpos", lambda s: (s[0] + 1, s[1], 3)),
    "xquat_xyz": _reshape("xquat", lambda s: (s[0], s[1], 3)),
    "xquat_other_bodies": _reshape("xquat", lambda s: (s[0], s[1] - 1, 4)),
    "xquat_without_xpos": _delete("xpos"),
    "qvel_short": _reshape("qvel", lambda s: (s[0] - 1, s[1])),
    "keypoint_names_repeat": _replace("keypoint_names", np.array([b"Wrist", b"Wrist", b"Elbow"])),
    "body_names_repeat": lambda f: _replace("body_names", np.array([b"world"] * len(f["body_names"])))(f),
}


@pytest.mark.parametrize("edit", sorted(FULL_CLIP_EDITS))
def test_every_clip_dataset_is_checked_against_the_others(tmp_path, edit):
    path = full_clip_file(tmp_path / "clips.h5")
    assert outcome(lambda: read_clip_files([path])) == "ok"
    with h5py.File(path, "r+") as f:
        FULL_CLIP_EDITS[edit](f)
    with pytest.raises(ClipError, match=str(path)):
        read_clip_files([path])
    assert outcome(lambda: read_clip_files([path])) == "error"


def test_train_on_wrong_offsets_is_one_line(tmp_path, capsys):
    """The reported case: `mimic train` on marker offsets of the wrong shape, before any compile."""
    from mimic_mjx.cli.main import main

    path = full_clip_file(tmp_path / "clips.h5")
    with h5py.File(path, "r+") as f:
        FULL_CLIP_EDITS["offsets_extra_keypoint"](f)
    assert main(["train", "--clips", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimic train: error:") and "\n" not in err
    assert "marker_offsets have shape (5, 3), expected (3, 3)" in err, err
    assert not (tmp_path / "run").exists()


def test_registration_layout_offsets_are_checked(tmp_path):
    path = tmp_path / "reg.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("qpos", data=np.zeros((10, 2), np.float32))
        f.create_dataset("names_qpos", data=np.array([b"a", b"b"]))
        f.create_dataset("kp_names", data=np.array([b"p", b"q"]))
        f.create_dataset("kp_data", data=np.zeros((10, 6), np.float32))
        f.create_dataset("offsets", data=np.zeros((3, 3), np.float32))
    with pytest.raises(ClipError, match=r"marker_offsets have shape \(3, 3\), expected \(2, 3\)"):
        read_clips(path)


def test_clips_with_offsets_but_no_keypoints_round_trip(tmp_path):
    """Offsets are stored with their keypoint names even in a clip without recorded keypoints."""
    import dataclasses

    from mimic_mjx.data.synthetic import make_reaching_clips

    clip = dataclasses.replace(make_reaching_clips(1, seed=0, num_frames=20)[0], keypoints=None)
    write_clips(tmp_path / "c.h5", [clip])
    (back,) = read_clips(tmp_path / "c.h5")
    assert back.keypoint_names == clip.keypoint_names and back.keypoints is None
    np.testing.assert_array_equal(back.marker_offsets, clip.marker_offsets)


# ---------------------------------------------------------------------------
# Every reader, not only clips and configs: refuses what is not a regular file (a named pipe hung
# `mimic experiment --perturb`) and decodes bytes it did not write with a clear error


def perturb_file(path: Path) -> Path:
    path.write_text("- kind: mass\n  scale: 2.0\n")
    return path


def emg_csv_file(path: Path) -> Path:
    t = np.arange(50) / 1000.0
    path.write_text("time,biceps,triceps\n" + "".join(f"{s:.4f},{np.sin(s):.5f},{np.cos(s):.5f}\n" for s in t))
    return path


def emg_nwb_file(path: Path) -> Path:
    from datetime import UTC, datetime

    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    start = datetime(2024, 1, 1, tzinfo=UTC)
    nwb = NWBFile(session_description="emg", identifier="t", session_start_time=start)
    nwb.add_acquisition(TimeSeries(name="biceps", data=np.linspace(0, 1, 200), unit="V", rate=1000.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def muscle_map_file(path: Path) -> Path:
    path.write_text("biceps: bic_long\ntriceps: tri_long\n")
    return path


def trial_table_file(path: Path) -> Path:
    path.write_text("clip,start_s,trial\nreach_000,0.5,\n")
    return path


def skeleton_file(path: Path) -> Path:
    import scipy.io

    scipy.io.savemat(path, {"joint_names": np.array(NAMES, dtype=object), "joints_idx": np.array([[1, 2], [2, 3]])})
    return path


def metrics_file(path: Path) -> Path:
    path.write_text('{"update": 1, "env_steps": 32, "reward": 0.5}\n{"update": 2, "env_steps": 64, "reward": NaN}\n')
    return path


def _read_emg(path: Path):
    from mimic_mjx.analysis.emg_io import read_emg

    return read_emg(path, rate_hz=1000.0)


def _read_with(module: str, name: str):
    def read(path: Path):
        import importlib

        return getattr(importlib.import_module(module), name)(path)

    return read


READERS = {
    "perturb": ("p.yaml", perturb_file, _read_with("mimic_mjx.analysis.perturb", "load_perturbations")),
    "emg_csv": ("emg.csv", emg_csv_file, _read_emg),
    "emg_nwb": ("emg.nwb", emg_nwb_file, _read_emg),
    "muscle_map": ("map.yaml", muscle_map_file, _read_with("mimic_mjx.analysis.emg_io", "read_mapping")),
    "trial_table": ("trials.csv", trial_table_file, _read_with("mimic_mjx.analysis.emg_io", "read_trial_table")),
    "skeleton": ("skeleton.mat", skeleton_file, _read_with("mimic_mjx.data.keypoints.dannce", "read_skeleton")),
    "metrics": ("metrics.jsonl", metrics_file, _read_with("mimic_mjx.presentation.report", "read_metrics")),
}
# Damage a reader accepts on purpose: a run without a metrics log yet, or one whose every line is
# damaged (skipped and counted), still gets a report.
READER_ACCEPTS = {("metrics", "missing"), ("metrics", "empty"), ("metrics", "random")}


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_reader_refuses_unusable_files(tmp_path, kind, damage):
    name, _, reader = READERS[kind]
    path = tmp_path / name
    DAMAGE[damage](path)
    expected = "ok" if (kind, damage) in READER_ACCEPTS else "error"
    assert outcome(lambda: reader(path)) == expected


@pytest.mark.parametrize("kind", sorted(READERS))
def test_every_reader_reads_its_valid_file(tmp_path, kind):
    name, write, reader = READERS[kind]
    assert outcome(lambda: reader(write(tmp_path / name))) == "ok"


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("seed", range(3))
def test_every_reader_survives_damaged_bytes(tmp_path, kind, seed):
    """Truncated or overwritten with bytes that are not text: a clean error or a documented acceptance."""
    name, write, reader = READERS[kind]
    path = write(tmp_path / name)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
    data[start : start + 16] = b"\xff\xfe\x80\x00" * 4  # never UTF-8
    path.write_bytes(bytes(data[: len(data) - seed * len(data) // 4]))
    outcome(lambda: reader(path))


def test_emg_binary_named_csv_and_text_named_nwb(tmp_path):
    """The reported cases: a UnicodeDecodeError and an h5py OSError, now one line each."""
    from mimic_mjx.analysis.emg_io import EmgError

    binary = tmp_path / "emg.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(EmgError, match=r"emg.csv is not a text \(UTF-8\) EMG recording"):
        _read_emg(binary)
    text = tmp_path / "emg.nwb"
    text.write_text("time,biceps\n0,1\n")
    with pytest.raises(EmgError, match=r"cannot read .*emg.nwb as HDF5 .*is it a NWB file\?"):
        _read_emg(text)
    other = tmp_path / "other.nwb"  # HDF5, but not NWB
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    assert outcome(lambda: _read_emg(other)) == "error"


def test_perturbation_pipe_does_not_hang(tmp_path):
    from mimic_mjx.analysis.perturb import PerturbationError, load_perturbations

    os.mkfifo(tmp_path / "p.yaml")
    with pytest.raises(PerturbationError, match="named pipe"):
        load_perturbations(tmp_path / "p.yaml")


def test_damaged_metrics_lines_are_skipped_and_counted(tmp_path):
    from mimic_mjx.presentation.report import read_metrics

    path = metrics_file(tmp_path / "metrics.jsonl")
    with open(path, "ab") as f:
        f.write(b'{"update": 3, "env_steps": 96, "re\xff\xfeward": 1}\n{"update": 4, "env_steps": 128}\n{"upd')
    records, damaged = read_metrics(path)
    assert [r["update"] for r in records] == [1, 2, 4] and damaged == 2
    assert np.isnan(records[1]["reward"])  # a NaN value is data, not damage


def test_report_on_a_run_with_undecodable_metrics_says_what_it_skipped(tmp_path):
    """The reported case: `mimic report` died with a UnicodeDecodeError on a damaged metrics.jsonl."""
    import json

    from conftest import tiny_config_dict
    from mimic_mjx.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny_config_dict()))
    lines = [json.dumps({"update": u, "env_steps": 32 * u, "reward/total": 0.1 * u}).encode() for u in (1, 2, 3)]
    (run / "metrics.jsonl").write_bytes(b"\n".join([lines[0], b"\xff\xfe\x00garbage\x80", lines[1], lines[2]]) + b"\n")
    (run / "provenance.jsonl").write_bytes(b"\xff\xfe not json\n")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    training = (tmp_path / "r.html").read_text().split('<section id="training">')[1].split("</section>")[0]
    assert "1 damaged line(s)" in training and "<img" in training  # the good lines still plot
