"""Virtual experiments end to end: a no-op is the baseline exactly, perturbations act where stated."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.analysis.experiment import experiment
from mimic_mjx.cli.main import main
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.training.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    clips = make_reaching_clips(2, seed=5, num_frames=30)
    train(config_lib.from_dict(tiny_config_dict()), root / "run", clips, log=lambda m: None)
    return root, clips


def _write(path, entries):
    path.write_text(yaml.safe_dump(entries))
    return path


def _arrays(path, clip, key):
    with h5py.File(path) as f:
        return f[f"clips/{clip}/{key}"][()]


def test_noop_is_the_baseline_and_perturbations_act(run, tmp_path):
    root, clips = run
    spec = _write(
        tmp_path / "p.yaml",
        [
            {"name": "noop", "kind": "mass", "scale": 1.0, "bodies": "all"},
            {"name": "gravity_x3", "kind": "gravity", "scale": 3.0},
            {"name": "mute", "kind": "silence_layer", "layer": "decoder_0", "fraction": 1.0},
            {
                "name": "push",
                "kind": "force_pulse",
                "body": "wrist_body",
                "direction": [0, 0, 1],
                "newtons": 0.05,
                "start_s": 0.05,
                "duration_s": 0.02,
            },
        ],
    )
    out = tmp_path / "out"
    result = experiment(root / "run", clips, spec, out, log=lambda m: None)
    rows = {r["condition"]: r for r in result["conditions"]}
    assert list(rows) == ["baseline", "noop", "gravity_x3", "mute", "push"]
    files = {r["condition"]: out / r["rollouts"] for r in result["conditions"]}
    c = clips[0].name
    for key in ("qpos", "activation", "latent", "muscle_length"):
        np.testing.assert_array_equal(_arrays(files["noop"], c, key), _arrays(files["baseline"], c, key))
    assert rows["noop"]["activation_change"] == 0.0 and rows["noop"]["latent_change"] == 0.0
    # Gravity changes the motion but not the intention's input at the first step.
    q0, q3 = _arrays(files["baseline"], c, "qpos"), _arrays(files["gravity_x3"], c, "qpos")
    assert np.nanmax(np.abs(q3 - q0)) > 1e-4
    # A fully silenced layer records zeros and changes the controls.
    assert np.nanmax(np.abs(_arrays(files["mute"], c, "layers/decoder_0"))) == 0.0
    assert rows["mute"]["activation_change"] > 0
    # The pulse starts at 50 ms (step 10 at 200 Hz): nothing differs before it, the motion after it does.
    qp = _arrays(files["push"], c, "qpos")
    np.testing.assert_array_equal(qp[:, :10], q0[:, :10])
    assert np.nanmax(np.abs(qp[:, 10:15] - q0[:, 10:15])) > 1e-5
    with h5py.File(files["push"]) as f:
        assert "force_pulse" in f.attrs["perturbation"]
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("condition,fraction_tracked") and len(table) == 6
    assert json.loads((out / "experiments.json").read_text())["conditions"][0]["condition"] == "baseline"
    assert (out / "experiments.png").stat().st_size > 0


def test_cli_experiment_bad_input_names_the_valid_choices(run, tmp_path, capsys):
    root, clips = run
    path = tmp_path / "clips.h5"
    write_clips(path, clips[:1])
    bad = _write(tmp_path / "bad.yaml", [{"kind": "mass", "scale": 2.0, "bodies": ["femur"]}])
    args = ["experiment", str(root / "run"), "--clips", str(path), "--perturb", str(bad), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "femur" in err and "humerus" in err and "Traceback" not in err
    bad = _write(tmp_path / "bad2.yaml", [{"kind": "silence_layer", "layer": "decoder_7", "fraction": 0.5}])
    args[5] = str(bad)
    assert main(args) == 2
    assert "decoder_0" in capsys.readouterr().err


@pytest.mark.slow
def test_experiment_runs_on_the_mjx_backend(run, tmp_path):
    root, clips = run
    spec = _write(tmp_path / "p.yaml", [{"name": "gravity_x2", "kind": "gravity", "scale": 2.0}])
    result = experiment(root / "run", clips[:1], spec, tmp_path / "out", backend="mjx", log=lambda m: None)
    assert result["backend"] == "mjx"
    base, grav = result["conditions"]
    assert base["fraction_tracked"] > 0 and grav["condition"] == "gravity_x2"
