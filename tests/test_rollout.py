"""Rollout datasets: the file follows docs/rollout-format.md, seeds, survival, long clips, network records."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.analysis.rollout import roll_out, survival
from mimic_mjx.cli.main import main
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.training.trainer import train

LAYOUT = Path(__file__).resolve().parents[1] / "docs" / "rollout-format.md"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    clips = make_reaching_clips(3, seed=3, num_frames=30)
    cfg = config_lib.from_dict(tiny_config_dict())
    train(cfg, root / "run", clips, log=lambda m: None)
    return root, clips


def _documented_datasets() -> dict[str, str]:
    """Per-clip dataset names and their documented shapes, read from the layout document."""
    text = LAYOUT.read_text().split("## Per clip")[1]
    rows = re.findall(r"^\| `([a-z_/<>]+)` \| \(([^)]*)\) \|(.*)$", text, flags=re.M)
    # Datasets documented as present only with an option (``--randomize``) are checked where it is given.
    return {name: shape for name, shape, rest in rows if "only" not in rest.split("|")[-2]}


def test_rollout_file_follows_the_layout_document(run, tmp_path):
    root, clips = run
    summary = roll_out(root / "run", clips, tmp_path / "data.h5", stochastic=True, seeds=2)
    doc = _documented_datasets()
    assert len(doc) > 20
    with h5py.File(tmp_path / "data.h5") as f:
        assert f.attrs["format"] == "mimic-rollouts" and f.attrs["format_version"] == 1
        assert f.attrs["seeds"] == 2 and bool(f.attrs["stochastic"])
        assert len(f.attrs["run_id"]) == 16
        nu = len(f["actuator_names"])
        layers = [n.decode() if isinstance(n, bytes) else n for n in f["layer_names"][()]]
        assert layers == ["encoder_0", "decoder_0"]
        for clip in clips:
            g = f[f"clips/{clip.name}"]
            T = g.attrs["steps"]
            assert T == (clip.num_frames - 1)
            for name, shape in doc.items():
                if name == "layers/<name>":
                    for layer in layers:
                        assert g[f"layers/{layer}"].shape[:2] == (2, T)
                    continue
                assert name in g, f"{name} documented but missing"
                lead = shape.split(",")[:2]
                want = (2, T) if lead[0].strip() == "S" else (T,)
                assert g[name].shape[: len(want)] == want, name
            assert g["muscle_length"].shape == (2, T, nu)
            tracked = g["tracked"][()]
            # NaN exactly where a rollout is no longer tracked.
            assert np.array_equal(np.isnan(g["qpos"][()]).any(axis=-1), ~tracked)
            # Muscles pull: forces are never positive where tracked.
            assert np.nanmax(g["actuator_force"][()]) <= 1e-6
            np.testing.assert_allclose(g["reference_qpos"][()], clip.qpos[1 : T + 1], atol=1e-6)
        curve = f["survival/fraction"][()]
        assert curve[0] <= 1 and np.all(np.diff(curve[np.isfinite(curve)]) <= 1e-12)
    assert 0 <= summary["mean_fraction_tracked"] <= 1


def test_deterministic_seeds_agree_and_stochastic_ones_differ(run, tmp_path):
    root, clips = run
    roll_out(root / "run", clips[:1], tmp_path / "det.h5", seeds=2)
    roll_out(root / "run", clips[:1], tmp_path / "sto.h5", stochastic=True, seeds=2)
    with h5py.File(tmp_path / "det.h5") as d, h5py.File(tmp_path / "sto.h5") as s:
        c = clips[0].name
        a = d[f"clips/{c}/ctrl"][()]
        np.testing.assert_array_equal(a[0], a[1])
        b = s[f"clips/{c}/ctrl"][()]
        n = min(np.isfinite(b[0, :, 0]).sum(), np.isfinite(b[1, :, 0]).sum())
        assert not np.allclose(b[0, :n], b[1, :n])


def test_a_clip_longer_than_the_training_clips_is_tracked_from_its_start(run, tmp_path):
    root, _ = run
    long = make_reaching_clips(1, seed=11, num_frames=120)
    roll_out(root / "run", long, tmp_path / "long.h5")
    with h5py.File(tmp_path / "long.h5") as f:
        g = f[f"clips/{long[0].name}"]
        assert g.attrs["steps"] == 119 and g["qpos"].shape[1] == 119
        assert g["tracked"][0, 0]  # the first step is simulated from the clip's first frame
        assert f["survival/fraction"].shape == (119,)


def test_survival_curve_counts_rollouts_that_last_long_enough():
    tracked = np.array(
        [
            [[1, 1, 1, 0], [1, 1, 1, 1]],  # clip 0 (4 steps): one seed lost at step 3
            [[1, 0, 0, 0], [1, 1, 0, 0]],  # clip 1 (2 steps long): padded after
        ],
        bool,
    )
    curve = survival(tracked, np.array([4, 2]))
    np.testing.assert_allclose(curve, [1.0, 0.75, 1.0, 0.5])


def test_cli_rollout_and_bad_input(run, tmp_path, capsys):
    root, clips = run
    path = tmp_path / "clips.h5"
    write_clips(path, clips[:1])
    assert main(["rollout", str(root / "run"), "--clips", str(path), "--out", str(tmp_path / "d.h5")]) == 0
    assert "survival" in capsys.readouterr().out
    assert main(["rollout", str(tmp_path / "nope"), "--clips", str(path), "--out", str(tmp_path / "e.h5")]) == 2
    err = capsys.readouterr().err
    assert "run directory not found" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit for a malformed argument
        main(["rollout", str(root / "run"), "--clips", str(path), "--out", str(tmp_path / "e.h5"), "--seeds", "0"])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_analyze_reads_a_real_rollout_file(run, tmp_path):
    from mimic_mjx.analysis.analyze import analyze

    root, clips = run
    roll_out(root / "run", clips, tmp_path / "data.h5", stochastic=True, seeds=2)
    result = analyze(tmp_path / "data.h5", tmp_path / "analysis")
    assert (tmp_path / "analysis" / "analysis.json").exists()
    assert "synergies" in result and len(result["synergies"]["vaf"]) >= 1


def _check_layout(path, clips, seeds):
    """The file holds every per-clip dataset of the layout document, with its documented leading axes."""
    with h5py.File(path) as f:
        assert f.attrs["format"] == "mimic-rollouts" and f.attrs["format_version"] == 1
        assert f.attrs["seeds"] == seeds
        layers = [n.decode() if isinstance(n, bytes) else n for n in f["layer_names"][()]]
        for clip in clips:
            g = f[f"clips/{clip.name}"]
            T = g.attrs["steps"]
            for name, shape in _documented_datasets().items():
                for key in [f"layers/{n}" for n in layers] if name == "layers/<name>" else [name]:
                    assert key in g, f"{key} documented but missing"
                    want = (seeds, T) if shape.split(",")[0].strip() == "S" else (T,)
                    assert g[key].shape[: len(want)] == want, key


def test_evaluate_writes_the_rollout_layout_that_analysis_and_plots_read(run, tmp_path, capsys):
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.presentation.plots import plot_clip

    root, clips = run
    summary = evaluate(root / "run", clips, tmp_path / "eval")
    data = tmp_path / "eval" / "rollouts.h5"
    _check_layout(data, clips, seeds=1)
    with h5py.File(data) as f:
        assert not f.attrs["stochastic"] and f.attrs["checkpoint_update"] == summary["checkpoint_update"]
        for c in summary["clips"]:
            g = f[f"clips/{c['clip']}"]
            assert g.attrs["fraction_tracked"] == pytest.approx(c["fraction_tracked"])
            # The summary's scores are those of the file's records.
            n = int(g["tracked"][0].sum())
            rmse = np.rad2deg(np.sqrt(np.mean(g["joint_error"][0, : max(n, 1)] ** 2)))
            assert c["joint_rmse_deg"] == pytest.approx(rmse, rel=1e-5)
            assert c["ee_error_mm"] == pytest.approx(1e3 * np.mean(g["ee_error"][0, : max(n, 1)]), rel=1e-5)
    # The same file as `mimic rollout` writes, deterministic and of one seed.
    roll_out(root / "run", clips, tmp_path / "rollout.h5")
    with h5py.File(data) as a, h5py.File(tmp_path / "rollout.h5") as b:
        for clip in clips:
            for key in ("qpos", "activation", "joint_error", "latent_mean", "reference_qpos"):
                np.testing.assert_array_equal(a[f"clips/{clip.name}/{key}"][()], b[f"clips/{clip.name}/{key}"][()])
    # `mimic analyze` reads evaluate's output as it reads any rollout dataset.
    assert main(["analyze", str(data), "--out", str(tmp_path / "analysis")]) == 0
    assert "latent_mean" in capsys.readouterr().out and (tmp_path / "analysis" / "analysis.json").is_file()
    # Evaluation's plots read the layout: evaluate's file and a stochastic `mimic rollout` file of two seeds.
    paths = plot_clip(data, clips[0].name, tmp_path / "plots")
    roll_out(root / "run", clips[:1], tmp_path / "two.h5", stochastic=True, seeds=2)
    paths += plot_clip(tmp_path / "two.h5", clips[0].name, tmp_path / "plots2", seed=1)
    assert [p.name for p in paths] == [f"{clips[0].name}_{k}.png" for k in ("joints", "muscles")] * 2
    assert all(p.stat().st_size > 1000 for p in paths)


def test_plots_refuse_a_file_of_another_layout_in_one_line(run, tmp_path):
    from mimic_mjx.errors import MimicError
    from mimic_mjx.presentation.plots import plot_clip

    root, clips = run
    old = tmp_path / "rollouts.h5"
    with h5py.File(old, "w") as f:  # evaluate's own layout before it wrote rollout datasets
        f.attrs["control_dt_s"] = 0.01
        f.create_dataset(f"clips/{clips[0].name}/qpos", data=np.zeros((5, 4)))
        f[f"clips/{clips[0].name}"].attrs["steps_tracked"] = 5
    with pytest.raises(MimicError, match=r"format attribute is '', not 'mimic-rollouts'.*`mimic evaluate`") as info:
        plot_clip(old, clips[0].name, tmp_path)
    roll_out(root / "run", clips[:1], tmp_path / "d.h5")
    with pytest.raises(MimicError, match="holds no clip 'nope'") as other:
        plot_clip(tmp_path / "d.h5", "nope", tmp_path)
    assert "\n" not in str(info.value) + str(other.value)
