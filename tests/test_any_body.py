"""Proof of generality (issue 21, item 7): bodies this project has never seen, through every stage.

Each model is written here and read through a body file (never registered as a
built-in): a fixed-base three-link arm with motors and a free-floating
segmented swimmer without gravity, moving in a plane. For each, keypoints are
synthesised from a known motion (sinusoidal joint angles, the markers placed by
forward kinematics) and written as an Anipose CSV; then the command line runs
``mimic register`` -> ``mimic train`` (a few updates, the body file's own
default config) -> ``mimic evaluate`` -> ``mimic rollout`` -> a few rendered
frames (skipped without OpenGL) -> ``mimic export`` (ONNX). Last, dm_control's
rodent through a stac-mjx-style YAML registers a short stretch of the shared
rat recording.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pytest

from conftest import DATA
from mimic_mjx.bodies import get_body
from mimic_mjx.cli.main import main
from test_bodyfile import ARM, MOTORS, swimmer_xml

FPS = 50.0
FRAMES = 100
CLIP_FRAMES = 25
# Small enough to compile and train a few updates in seconds on a 2-core CPU.
TINY = """config:
  name: tiny
  env: {backend: native, native_threads: 1}
  agent: {encoder_layers: [16], decoder_layers: [16], value_layers: [16], latent_dim: 4, kl_ramp_steps: 100}
  ppo: {num_envs: 8, unroll_length: 4, num_minibatches: 2, update_epochs: 1}
  train: {total_steps: 96, checkpoint_every_updates: 1, log_every_updates: 1}
"""
ARM_BODY = f"""name: arm3
mjcf: arm.xml
keypoint_unit: mm
substeps: 10
keypoints:
  Shoulder: upper
  Elbow: fore
  Wrist: hand
  Tip: {{site: fingertip, offset: [0.01, 0, 0]}}
{TINY}"""
SEGMENTS = 5
SWIMMER_BODY = (
    "name: swimmer5\nmjcf: swimmer.xml\nkeypoint_unit: mm\nsubsteps: 10\nkeypoints:\n"
    + "".join(f"  S{k}: {{body: seg{k}, offset: [0.025, 0, 0]}}\n" for k in range(SEGMENTS))
    + "  Head: seg0\n  Tail: {body: seg4, offset: [0.05, 0, 0]}\n"
    + TINY
)


def known_motion(model: mujoco.MjModel, frames: int = FRAMES) -> np.ndarray:
    """qpos over time: every hinge a sinusoid inside its range; a free root swims forward and turns."""
    t = np.arange(frames) / FPS
    qpos = np.tile(model.qpos0, (frames, 1))
    first = 0
    if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        first = 1
        qpos[:, 0] += 0.02 * t  # forward along x at 2 cm/s
        qpos[:, 1] += 0.005 * np.sin(2 * np.pi * t)
        yaw = 0.3 * np.sin(2 * np.pi * 0.5 * t)  # turning in the plane
        qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
    for j in range(first, model.njnt):
        lo, hi = model.jnt_range[j]
        mid, amp = (lo + hi) / 2, 0.4 * (hi - lo) / 2
        qpos[:, model.jnt_qposadr[j]] = mid + amp * np.sin(2 * np.pi * 1.0 * t + 0.7 * j)
    return qpos


def markers(body, qpos: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The keypoint map's markers at each pose (m): (names, (T, K, 3))."""
    model = body.compile()
    data = mujoco.MjData(model)
    kmap = body.keypoint_map
    out = np.zeros((len(qpos), len(kmap.names), 3))
    for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        for k, (b, off) in enumerate(kmap.keypoints.values()):
            bid = model.body(b).id
            out[i, k] = data.xpos[bid] + data.xmat[bid].reshape(3, 3) @ np.asarray(off)
    return list(kmap.names), out


def write_anipose_csv(path: Path, names: list[str], positions_m: np.ndarray) -> Path:
    """An Anipose 3D table in millimetres (the unit the body file names; the CSV names none)."""
    cols = [f"{n}_{c}" for n in names for c in ("x", "y", "z", "score")] + ["fnum"]
    rows = []
    for i, frame in enumerate(positions_m * 1000.0):
        rows.append([f"{v:.6f}" for p in frame for v in (*p, 1.0)] + [str(i)])
    path.write_text(",".join(cols) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def run_cli(argv: list[str], capsys) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, f"mimic {' '.join(map(str, argv))} exited {code}: {err[-2000:]}"
    return out


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Per body: its folder, the body, the true qpos; register and train run in the tests below."""
    out = {}
    for kind, xml, text in (
        ("arm", ARM.replace("ACTUATORS", MOTORS), ARM_BODY),
        ("swimmer", swimmer_xml(SEGMENTS), SWIMMER_BODY),
    ):
        root = tmp_path_factory.mktemp(kind)
        (root / f"{kind}.xml").write_text(xml)
        path = root / f"{kind}.yaml"
        path.write_text(text)
        body = get_body(path)
        qpos = known_motion(body.compile())
        names, pos = markers(body, qpos)
        write_anipose_csv(root / "keypoints.csv", names, pos)
        out[kind] = {"root": root, "yaml": path, "body": body, "qpos": qpos}
    return out


def _register_and_train(p: dict, capsys) -> None:
    root, yaml = p["root"], p["yaml"]
    if (root / "run" / "checkpoints").is_dir():
        return
    # No --units: the body file's keypoint_unit (mm) says what the CSV's numbers are.
    text = run_cli(
        ["register", "--body", yaml, "--keypoints", root / "keypoints.csv", "--fps", FPS, "--out", root / "clips.h5",
         "--clip-length", CLIP_FRAMES, "--rounds", 2, "--iterations", 15],
        capsys,
    )  # fmt: skip
    assert f"wrote {FRAMES // CLIP_FRAMES} clip(s)" in text
    with h5py.File(root / "clips.h5") as f:
        names = sorted(f["clips"]) if "clips" in f else []
    assert names, "no clips written"
    from mimic_mjx.data.clips import read_clip_files

    clips = read_clip_files([root / "clips.h5"])
    assert all(c.body == p["body"].name for c in clips)  # clips name the body file's resolved path
    qpos = np.concatenate([c.qpos for c in clips])
    # The known motion is recovered (a free root: up to the tiny offsets' refinement).
    assert np.max(np.abs(qpos[:, -3:] - p["qpos"][:, -3:])) < 0.1
    run_cli(["clips", "check", root / "clips.h5"], capsys)
    # The body file's own default config (tiny) trains it: --set names the body file alone.
    run_cli(["train", "--clips", root / "clips.h5", "--run-dir", root / "run", "--set", f"env.body={yaml}"], capsys)
    assert (root / "run" / "checkpoints").is_dir()


def _later_stages(p: dict, capsys, tmp_path: Path) -> None:
    root = p["root"]
    run = root / "run"
    cfg = json.loads((run / "config.json").read_text())
    # The body file's own config trained it, and the run names the body by its resolved path.
    assert cfg["env"]["body"] == p["body"].name and cfg["agent"]["latent_dim"] == 4
    text = run_cli(["evaluate", run, "--clips", root / "clips.h5", "--out", tmp_path / "eval", "--plots", 0], capsys)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert "wrote" in text and summary["clips"]
    run_cli(["rollout", run, "--clips", root / "clips.h5", "--out", tmp_path / "rollouts.h5"], capsys)
    with h5py.File(tmp_path / "rollouts.h5") as f:
        assert len(f.keys()) > 0
    onnx = tmp_path / "policy.onnx"
    text = run_cli(["export", run, "--out", onnx], capsys)
    assert onnx.is_file() and onnx.stat().st_size > 1000 and "wrote" in text
    _render_frames(p, run, root / "clips.h5", tmp_path)


def _render_frames(p: dict, run: Path, clips_file: Path, tmp_path: Path) -> None:
    """A few frames of the trained body beside its reference; skipped where no OpenGL context can be made."""
    from mimic_mjx.data.clips import read_clip_files
    from mimic_mjx.errors import MimicError
    from mimic_mjx.presentation import video
    from mimic_mjx.presentation.render import open_renderer

    model = p["body"].compile_trainable()
    try:
        open_renderer(model, 16, 16).close()
    except MimicError as exc:
        pytest.skip(f"no offscreen OpenGL backend here, cannot render: {exc}")
    clips = read_clip_files([clips_file])
    out = tmp_path / "clip.mp4"
    result = video.render_rollout(run, clips, clips[0].name, out, width=96, height=72, slowmo=1, log=lambda m: None)
    assert result["frames"] >= 2 and out.stat().st_size > 0


@pytest.mark.slow
def test_arm_register_and_train(pipelines, capsys):
    _register_and_train(pipelines["arm"], capsys)


@pytest.mark.slow
def test_arm_evaluate_rollout_export_render(pipelines, capsys, tmp_path):
    _register_and_train(pipelines["arm"], capsys)
    _later_stages(pipelines["arm"], capsys, tmp_path)


@pytest.mark.slow
def test_swimmer_register_and_train(pipelines, capsys):
    _register_and_train(pipelines["swimmer"], capsys)


@pytest.mark.slow
def test_swimmer_evaluate_rollout_export_render(pipelines, capsys, tmp_path):
    _register_and_train(pipelines["swimmer"], capsys)
    _later_stages(pipelines["swimmer"], capsys, tmp_path)


@pytest.mark.slow
def test_bench_takes_a_body_file_with_its_config_and_substeps(pipelines, capsys):
    p = pipelines["arm"]
    argv = ["bench", "--body", p["yaml"], "--backend", "native", "--num-envs", 4, "--updates", 1, "--no-published"]
    result = json.loads(run_cli(argv, capsys).strip().splitlines()[-1])
    # The body file's substeps and its config's networks, not ExperimentConfig's defaults.
    assert result["body"] == p["body"].name and result["substeps"] == 10
    assert result["networks"].startswith("enc 16") and result["train_steps_per_s"] > 0


@pytest.mark.needs_data
@pytest.mark.slow
def test_rodent_through_a_stac_mjx_yaml_registers_the_rat_recording(tmp_path, capsys):
    recording = DATA / "rodent" / "rat_dannce_1000f.mat"
    if not recording.is_file():
        pytest.skip(f"real data not found: {recording} (expected ../shared/data beside the project)")
    from mimic_mjx.bodies.rat import rodent_xml_path
    from test_bodyfile_stac import stac_yaml

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "rodent.xml").symlink_to(rodent_xml_path())
    (tmp_path / "models" / "rodent_walker_skin.skn").symlink_to(rodent_xml_path().parent / "rodent_walker_skin.skn")
    (tmp_path / "configs" / "model").mkdir(parents=True)
    yaml = tmp_path / "configs" / "model" / "rodent.yaml"
    # stac-mjx's layout and keys; 'root: free' (a body-file key beside them) frees the rodent as dm_control does.
    yaml.write_text(stac_yaml("models/rodent.xml", "root: free\n"))
    out = tmp_path / "rat_clips.h5"
    # No --units: MOCAP_SCALE_FACTOR 0.001 says millimetres.
    text = run_cli(
        ["register", "--body", yaml, "--keypoints", recording, "--fps", 50, "--out", out, "--rounds", 1,
         "--iterations", 10, "--frames", 30],
        capsys,
    )  # fmt: skip
    assert "wrote 1 clip(s)" in text
    from mimic_mjx.data.clips import read_clip_files

    (clip,) = read_clip_files([out])
    assert clip.body == str(yaml.resolve()) and len(clip.qpos) == 30 and clip.qpos.shape[1] == 74
    assert 1000 * float(np.nanmedian(clip.keypoint_residuals)) < 15.0


def test_stac_mjx_file_with_body_file_keys_is_the_builtin_rat():
    """benchmarks/rodent_stac.yaml: stac-mjx's keys plus body-file keys make the same models as `rat`."""
    ours, rat = get_body(Path(__file__).parents[1] / "benchmarks" / "rodent_stac.yaml"), get_body("rat")
    assert any("no meaning here" in n for n in ours.notes) and ours.keypoint_unit == "mm"
    for which in ("compile", "compile_trainable"):
        a, b = getattr(ours, which)(), getattr(rat, which)()
        assert (a.nq, a.nv, a.nu, a.ngeom) == (b.nq, b.nv, b.nu, b.ngeom)
        assert (a.opt.solver, a.opt.iterations, a.opt.ls_iterations, a.opt.timestep) == (
            b.opt.solver, b.opt.iterations, b.opt.ls_iterations, b.opt.timestep,
        )  # fmt: skip
        np.testing.assert_allclose(a.body_mass, b.body_mass)
        np.testing.assert_array_equal(a.geom_contype, b.geom_contype)
        np.testing.assert_array_equal(a.geom_conaffinity, b.geom_conaffinity)
    assert ours.tracked() == rat.tracked() and ours.end_effectors == rat.end_effectors
    for name, (b, off) in rat.keypoint_map.keypoints.items():
        assert ours.keypoint_map.keypoints[name][0] == b
        np.testing.assert_allclose(ours.keypoint_map.keypoints[name][1], off, atol=1e-9)
    assert ours.default_config().env.substeps == rat.default_config().env.substeps


@pytest.mark.parametrize(
    "extra, match",
    [
        ("mjcf: other.xml\n", "'mjcf' restates MJCF_PATH"),
        ("scale: 2\n", "'scale' restates SCALE_FACTOR"),
        ("solvr: {type: cg}\n", "did you mean 'solver'"),
    ],
)
def test_stac_mjx_file_body_file_keys_checked(tmp_path, extra, match):
    from mimic_mjx.bodies.bodyfile import load_body_file
    from mimic_mjx.errors import BodyError

    (tmp_path / "arm.xml").write_text(ARM.replace("ACTUATORS", MOTORS))
    path = tmp_path / "arm_stac.yaml"
    path.write_text(f"MJCF_PATH: arm.xml\nKEYPOINT_MODEL_PAIRS: {{Elbow: fore}}\nSCALE_FACTOR: 1\n{extra}")
    with pytest.raises(BodyError, match=match) as info:
        load_body_file(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
