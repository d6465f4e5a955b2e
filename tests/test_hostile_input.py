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
