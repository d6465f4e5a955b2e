"""Runs carry their body (issue 21, item 5): a run folder keeps the compiled model, the body file and a hash.

A fixed-base arm with motors, written here as a body file, trains a few
updates; then its MJCF and YAML are deleted and the run is evaluated, rolled
out, exported and resumed from its folder alone. Clips record the hash of the
body they were registered to, and training refuses clips of another model of
the body; a resumed run whose body file changed says what changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.layout import reference_velocities
from mimic_mjx.bodies.stored import load_stored_body
from mimic_mjx.data.clips import Clip, read_clips, write_clips
from mimic_mjx.errors import BindingError, RunDirError
from mimic_mjx.training.experiment import build_env
from test_bodyfile import ARM, MOTORS

BODY = """name: arm3
mjcf: arm.xml
substeps: 10
end_effectors: [hand]
keypoints:
  Shoulder: upper
  Elbow: fore
  Wrist: hand
config:
  env: {backend: native, native_threads: 1}
"""


def write_body(folder: Path, xml: str = ARM.replace("ACTUATORS", MOTORS), text: str = BODY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arm.xml").write_text(xml)
    (folder / "arm.yaml").write_text(text)
    return folder / "arm.yaml"


def arm_clips(body, n: int = 2, frames: int = 40, body_hash: str | None = None) -> list[Clip]:
    """Sinusoids inside each joint's range: clips of ``body`` without registration."""
    model = body.compile()
    t = np.arange(frames) / 50.0
    out = []
    for k in range(n):
        qpos = np.stack([0.3 * np.sin(2 * np.pi * t + j + k) for j in range(model.njnt)], axis=1).astype(np.float32)
        names = tuple(model.joint(j).name for j in range(model.njnt))
        qvel = reference_velocities(qpos, 50.0).astype(np.float32)
        out.append(Clip(f"c{k}", body.name, 50.0, names, qpos, qvel, body_hash=body_hash))
    return out


def tiny_cfg(body, tiny_config_dict) -> config_lib.ExperimentConfig:
    values = {**tiny_config_dict, "env": {"body": body.name, "backend": "native", "native_threads": 1}}
    values["env"]["substeps"] = 10
    return config_lib.from_dict(values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the arm (2 updates), trained on clips that record the arm's hash."""
    from conftest import tiny_config_dict
    from mimic_mjx.training.trainer import train

    root = tmp_path_factory.mktemp("runbody")
    yaml = write_body(root / "model")
    body = get_body(yaml)
    clips = arm_clips(body, body_hash=body.body_hash())
    cfg = tiny_cfg(body, tiny_config_dict())
    train(cfg, root / "run", clips, log=lambda m: None)
    return {"root": root, "yaml": yaml, "body": body, "clips": clips, "cfg": cfg}


def _copy_run(trained, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained["root"] / "run", run)
    return run


@pytest.mark.slow
def test_run_stores_its_body(trained):
    run, body = trained["root"] / "run", trained["body"]
    for name in ("model.mjb", "body.json", "body.yaml"):
        assert (run / "body" / name).is_file(), name
    assert (run / "body" / "body.yaml").read_text() == trained["yaml"].read_text()
    stored, meta = load_stored_body(run / "body")
    assert meta["source"] == str(trained["yaml"]) and meta["body_hash"] == body.body_hash()
    assert stored.name == body.name and stored.end_effectors == ("hand",)
    assert stored.keypoint_map.keypoints == body.keypoint_map.keypoints
    assert stored.simulated_hash() == body.simulated_hash() == meta["model_sha256"]
    # The stored clips keep the hash of the body they were registered to.
    assert {c.body_hash for c in read_clips(run / "train_clips.h5")} == {body.body_hash()}


@pytest.mark.slow
def test_run_works_after_the_body_files_are_deleted(trained, tmp_path, capsys):
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.analysis.rollout import roll_out
    from mimic_mjx.cli.main import main
    from mimic_mjx.training.checkpoint import load_policy

    run = _copy_run(trained, tmp_path)
    # A second copy of the body files, moved away from where the run's config says they are.
    model_dir = tmp_path / "model"
    shutil.copytree(trained["yaml"].parent, model_dir)
    moved = trained["yaml"].parent.rename(tmp_path / "moved")
    try:
        policy = load_policy(run)
        assert policy.body is not None and policy.body.name == trained["body"].name
        clips = trained["clips"]
        summary = evaluate(run, clips, tmp_path / "eval")
        assert len(summary["clips"]) == len(clips)
        roll_out(run, clips, tmp_path / "r.h5")
        with h5py.File(tmp_path / "r.h5") as f:
            assert f.attrs["body_hash"] == trained["body"].body_hash()
            assert f.attrs["body"] == trained["body"].name
        pytest.importorskip("onnx")
        assert main(["export", str(run), "--out", str(tmp_path / "p.onnx")]) == 0
        assert (tmp_path / "p.onnx").is_file()
        # Resumed from the folder alone: the stored body, said in one line.
        code = main(["train", "--run-dir", str(run), "--resume", "--set", "train.total_steps=128"])
        assert code == 0
        assert "resuming with the stored copy" in capsys.readouterr().err
    finally:
        moved.rename(trained["yaml"].parent)


@pytest.mark.slow
def test_resume_with_a_changed_body_names_what_changed(trained, tmp_path):
    from mimic_mjx.training.trainer import train

    run = _copy_run(trained, tmp_path)
    yaml = trained["yaml"]
    xml = yaml.parent / "arm.xml"
    original, original_yaml = xml.read_text(), yaml.read_text()
    cfg = trained["cfg"]

    def edit(new_xml: str, n: int) -> None:
        xml.write_text(new_xml)
        # This process reads a body file again when its own bytes change (a new process always does).
        yaml.write_text(original_yaml + f"# edit {n}\n")

    try:
        # Heavier forearm: same joints, another model.
        edit(original.replace('size="0.008"/>', 'size="0.008" mass="0.5"/>'), 1)
        with pytest.raises(RunDirError) as err:
            train(cfg, run, resume=True, log=lambda m: None)
        msg = str(err.value)
        assert "\n" not in msg and "changed since" in msg and "masses (fore" in msg and "--stored-body" in msg
        lines = []
        train(cfg, run, resume=True, stored_body=True, log=lines.append)
        assert any("resuming with the stored copy" in line for line in lines)
        # A joint more is named as such.
        edit(original.replace('<joint name="wrist"', '<joint name="twist" axis="1 0 0"/><joint name="wrist"'), 2)
        with pytest.raises(RunDirError, match=r"joints \(3 -> 4, added twist\)"):
            train(cfg, run, resume=True, log=lambda m: None)
    finally:
        xml.write_text(original)
        yaml.write_text(original_yaml)


def test_clips_of_another_model_are_refused(tmp_path):
    from conftest import tiny_config_dict

    body = get_body(write_body(tmp_path / "a"))
    heavy = ARM.replace("ACTUATORS", MOTORS).replace('size="0.008"/>', 'size="0.008" mass="0.5"/>')
    other = get_body(write_body(tmp_path / "b", xml=heavy))
    assert other.body_hash() != body.body_hash()
    cfg = tiny_cfg(body, tiny_config_dict())
    # Clips registered to the other model of the arm (its hash), renamed to this body.
    clips = arm_clips(body, body_hash=other.body_hash())
    with pytest.raises(BindingError) as err:
        build_env(cfg, clips)
    msg = str(err.value)
    assert "\n" not in msg and "registered to another model" in msg
    assert other.body_hash()[:12] in msg and body.body_hash()[:12] in msg and body.name in msg
    # Clips of the other body under its own name: the error names both bodies.
    with pytest.raises(BindingError, match=f"'{other.name}'.*'{body.name}'"):
        build_env(cfg, arm_clips(other, body_hash=other.body_hash()))
    # The same model at another path (files copied): its clips bind.
    build_env(cfg, arm_clips(get_body(write_body(tmp_path / "copy")), body_hash=body.body_hash()))
    # Clips without a hash bind as before.
    build_env(cfg, arm_clips(body))


def test_clip_files_keep_the_body_hash(tmp_path):
    body = get_body(write_body(tmp_path / "a"))
    h = body.body_hash()
    write_clips(tmp_path / "c.h5", arm_clips(body, body_hash=h))
    assert {c.body_hash for c in read_clips(tmp_path / "c.h5")} == {h}
    write_clips(tmp_path / "none.h5", arm_clips(body))
    assert {c.body_hash for c in read_clips(tmp_path / "none.h5")} == {None}
    mixed = arm_clips(body, body_hash=h)[:1] + [
        Clip(**{**arm_clips(body)[1].__dict__, "name": "x", "body_hash": "f" * 64})
    ]
    with pytest.raises(Exception, match="different models"):
        write_clips(tmp_path / "mixed.h5", mixed)


def test_body_hash_is_stable_across_reloads(tmp_path):
    a = get_body(write_body(tmp_path / "a"))
    b = get_body(write_body(tmp_path / "b"))  # the same files elsewhere
    assert a.body_hash() == b.body_hash() and len(a.body_hash()) == 64
    assert a.simulated_hash() == b.simulated_hash()
