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
    rows = re.findall(r"^\| `([a-z_/<>]+)` \| \(([^)]*)\) \|", text, flags=re.M)
    return dict(rows)


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
