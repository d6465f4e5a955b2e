"""`mimic analyze`: PCA and NMF synergies on data of known structure, end to end on a fabricated rollout file."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mimic_mjx.analysis.analyze import add_parser, analyze
from mimic_mjx.analysis.population import AnalysisError, nmf_synergies, pca_summary
from mimic_mjx.errors import MimicError

CONTROL_DT = 0.02


def _low_rank(rng, n: int, dims: int, rank: int, noise: float = 1e-3) -> np.ndarray:
    # Orthonormal loadings and unit-variance factors: each factor carries about 1/rank of the variance.
    loadings = np.linalg.qr(rng.normal(size=(dims, rank)))[0].T
    return rng.normal(size=(n, rank)) @ loadings + noise * rng.normal(size=(n, dims)) + 3.0


def _matched_cosines(true: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Cosine of each true synergy with its best match in ``found``, one-to-one (Hungarian)."""
    t = true / np.linalg.norm(true, axis=1, keepdims=True)
    f = found / np.linalg.norm(found, axis=1, keepdims=True)
    cos = t @ f.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def _block_synergies(rng, k: int, per: int) -> np.ndarray:
    # Each synergy drives its own group of muscles, with a little spill-over onto the others.
    H = 0.1 * rng.uniform(size=(k, k * per))
    for i in range(k):
        H[i, per * i : per * (i + 1)] = rng.uniform(0.5, 1.0, per)
    return H


# -- PCA -----------------------------------------------------------------


def test_pca_finds_three_factors_in_16_dims():
    X = _low_rank(np.random.default_rng(0), 500, 16, 3)
    r = pca_summary(X, max_components=10)
    assert r["components_95"] == 3
    assert r["components_90"] == 3
    assert r["n_samples"] == 500 and r["dims"] == 16
    assert len(r["explained_variance_ratio"]) == 10
    assert r["cumulative"][2] > 0.999
    assert np.all(np.diff(r["cumulative"]) >= 0)
    assert r["projection"].shape == (500, 10)
    # The projection is centred and its variance is the explained variance.
    assert np.allclose(r["projection"].mean(axis=0), 0, atol=1e-9)
    assert np.allclose(r["projection"].var(axis=0, ddof=1), r["pca"].explained_variance_[:10])


def test_pca_leaves_out_nan_rows_and_keeps_rows_aligned():
    X = _low_rank(np.random.default_rng(1), 200, 8, 2)
    X[150:] = np.nan
    r = pca_summary(X, max_components=4)
    assert r["n_samples"] == 150
    assert r["components_95"] == 2
    assert r["projection"].shape == (200, 4)
    assert np.all(np.isnan(r["projection"][150:])) and np.all(np.isfinite(r["projection"][:150]))


def test_pca_components_can_exceed_max_components():
    # 90 %/95 % come from the full spectrum even when fewer components are listed.
    X = _low_rank(np.random.default_rng(2), 400, 12, 6)
    r = pca_summary(X, max_components=2)
    assert r["components_95"] == 6
    assert len(r["cumulative"]) == 2 and r["cumulative"][-1] < 0.5


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.full((10, 4), np.nan), "no finite samples"),
        (np.ones((1, 4)), "at least 2"),
        (np.ones((10, 4)), "no variance"),
        (np.ones(10), "2-D"),
    ],
)
def test_pca_rejects_unusable_input(X, match):
    with pytest.raises(AnalysisError, match=match):
        pca_summary(X)


# -- NMF synergies -------------------------------------------------------


def test_nmf_recovers_four_synergies():
    rng = np.random.default_rng(1)
    H = _block_synergies(rng, 4, 3)
    # Sparse activations: synergies rarely overlap in time, so no three of them can stand in for four.
    W = np.maximum(0.0, rng.normal(size=(400, 4)) - 1.0)
    A = W @ H + 0.01 * rng.uniform(size=(400, 12))
    r = nmf_synergies(A, 6)
    assert len(r["vaf"]) == 6
    assert r["vaf"][2] < 0.9 <= r["vaf"][3]
    assert r["synergies_needed"] == 4 and r["k"] == 4
    assert r["vaf"][3] > 0.99
    H4, W4 = r["H"][3], r["W"][3]
    assert H4.shape == (4, 12) and W4.shape == (400, 4)
    assert np.allclose(np.linalg.norm(H4, axis=1), 1.0)
    assert np.all(_matched_cosines(H, H4) > 0.9)
    # The normalisation moved the scale into W without changing the fit.
    assert 1 - np.sum((A - W4 @ H4) ** 2) / np.sum(A**2) == pytest.approx(r["vaf"][3])


def test_nmf_is_deterministic_and_skips_nan_rows():
    rng = np.random.default_rng(3)
    A = np.maximum(0.0, rng.normal(size=(100, 3)) - 0.5) @ _block_synergies(rng, 3, 2)
    A[90:] = np.nan
    r1, r2 = nmf_synergies(A, 3), nmf_synergies(A, 3)
    assert r1["n_samples"] == 90
    assert np.array_equal(r1["vaf"], r2["vaf"]) and np.array_equal(r1["H"][2], r2["H"][2])
    assert np.all(np.isnan(r1["W"][2][90:]))


@pytest.mark.parametrize(
    ("A", "k", "match"),
    [
        (-np.ones((10, 4)), 2, "non-negative"),
        (np.full((10, 4), np.nan), 2, "no finite samples"),
        (np.ones((1, 4)), 1, "at least 2"),
        (np.zeros((10, 4)), 2, "all zero"),
        (np.ones((10, 4)), 5, "max_synergies"),
        (np.ones((10, 4)), 0, "max_synergies"),
    ],
)
def test_nmf_rejects_unusable_input(A, k, match):
    with pytest.raises(AnalysisError, match=match):
        nmf_synergies(A, k)


# -- end to end on a fabricated rollout file -----------------------------


def write_rollout_file(path, *, muscles: int = 9, seed: int = 0) -> dict:
    """A small dataset in the layout of docs/rollout-format.md; returns the ground truth.

    2 clips, S = 2, T = 50. The latent mean (8-d) has rank 3, layer
    ``decoder_0`` (12-d) rank 2, ``decoder_1`` is dead (all zero); the
    activations of ``muscles`` muscles come from 3 synergies, plus one motor
    that must stay out of them. Rollout (clip_a, seed 1) loses tracking at step 30.
    """
    rng = np.random.default_rng(seed)
    S, T, Z = 2, 50, 8
    clips = ["clip_a", "clip_b"]
    latent_loadings = np.linalg.qr(rng.normal(size=(Z, 3)))[0].T
    layer_loadings = np.linalg.qr(rng.normal(size=(12, 2)))[0].T
    n_syn = 3
    H = _block_synergies(rng, n_syn, muscles // n_syn) if muscles else np.zeros((n_syn, 0))
    names = [f"muscle_{i}" for i in range(muscles)] + ["motor"]
    with h5py.File(path, "w") as f:
        f.attrs.update(
            format="mimic-rollouts",
            format_version=1,
            body="test_arm",
            run_id="0123456789abcdef",
            control_dt_s=CONTROL_DT,
            stochastic=False,
            seeds=S,
            perturbation="",
        )
        f["actuator_names"] = np.array(names, dtype=h5py.string_dtype())
        f["actuator_is_muscle"] = np.array([True] * muscles + [False])
        f["layer_names"] = np.array(["encoder_0", "decoder_0", "decoder_1"], dtype="S")
        for c, name in enumerate(clips):
            g = f.create_group(f"clips/{name}")
            g.attrs.update(frames=T + 1, steps=T)
            time_s = (np.arange(T) + 1) * CONTROL_DT
            phase = rng.uniform(0, 2 * np.pi, (S, 1, 3))
            freq = np.array([1.0, 1.7, 2.9]) * (1 + 0.3 * c)
            factors = np.sin(2 * np.pi * freq * time_s[None, :, None] + phase)  # (S, T, 3)
            latent = factors @ latent_loadings + 1e-3 * rng.normal(size=(S, T, Z))
            decoder_0 = factors[..., :2] @ layer_loadings + 1e-3 * rng.normal(size=(S, T, 12))
            # Bursts of each synergy, rarely overlapping.
            bursts = np.maximum(0.0, np.sin(2 * np.pi * 2.0 * time_s[None, :, None] + phase * 2) - 0.5)
            activation = np.concatenate([bursts @ H, rng.uniform(-5, 5, (S, T, 1))], axis=-1)
            activation[..., :muscles] -= 1e-4  # solver noise below zero must be clipped, not rejected
            tracked = np.ones((S, T), bool)
            if c == 0:
                tracked[1, 30:] = False
            arrays = {
                "latent_mean": latent,
                "latent_var": np.ones_like(latent),
                "layers/encoder_0": np.tanh(latent @ rng.normal(size=(Z, 16))),
                "layers/decoder_0": decoder_0,
                "layers/decoder_1": np.zeros((S, T, 6)),
                "activation": activation,
                "ctrl": activation,
            }
            g["time_s"] = time_s
            g["tracked"] = tracked
            for key, arr in arrays.items():
                arr = arr.copy()
                arr[~tracked] = np.nan
                g[key] = arr.astype(np.float32)
    return {"clips": clips, "H": H, "muscles": names[:muscles], "tracked_steps": 2 * S * T - 20}


def test_analyze_end_to_end(tmp_path):
    truth = write_rollout_file(tmp_path / "rollouts.h5")
    out = tmp_path / "analysis"
    summary = analyze(tmp_path / "rollouts.h5", out, max_components=5)

    on_disk = json.loads((out / "analysis.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["data"] == str((tmp_path / "rollouts.h5").resolve())
    assert on_disk["body"] == "test_arm" and on_disk["run_id"] == "0123456789abcdef"
    assert on_disk["clips"] == truth["clips"]
    assert on_disk["n_tracked_steps"] == truth["tracked_steps"]

    reps = on_disk["representations"]
    assert set(reps) == {"latent_mean", "layers/encoder_0", "layers/decoder_0", "layers/decoder_1"}
    lat = reps["latent_mean"]
    assert lat["n_samples"] == truth["tracked_steps"] and lat["dims"] == 8
    assert lat["components_95"] == 3
    assert len(lat["explained_variance_ratio"]) == 5 and len(lat["cumulative"]) == 5
    assert lat["cumulative"][2] > 0.99
    assert reps["layers/decoder_0"]["components_95"] == 2 and reps["layers/decoder_0"]["dims"] == 12
    assert reps["layers/encoder_0"]["dims"] == 16
    assert "no variance" in reps["layers/decoder_1"]["skipped"]

    syn = on_disk["synergies"]
    assert syn["muscles"] == truth["muscles"]  # the motor is not a muscle
    assert syn["n_samples"] == truth["tracked_steps"]
    assert len(syn["vaf"]) == 8  # min(8, 9 muscles)
    assert syn["vaf"][1] < 0.9 <= syn["vaf"][2]
    assert syn["synergies_90"] == 3 and len(syn["weights"]) == 3
    weights = np.array([[w[m] for m in truth["muscles"]] for w in syn["weights"]])
    assert np.all(_matched_cosines(truth["H"], weights) > 0.9)

    assert on_disk["plots"] == [
        "pca_variance.png",
        "latent_pcs_by_time.png",
        "latent_pcs_by_clip.png",
        "synergies_vaf.png",
        "synergy_weights.png",
    ]
    for name in on_disk["plots"]:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in out.iterdir()) == sorted([*on_disk["plots"], "analysis.json"])


def test_analyze_without_muscles(tmp_path):
    write_rollout_file(tmp_path / "rollouts.h5", muscles=0)
    summary = analyze(tmp_path / "rollouts.h5", tmp_path / "out")
    assert summary["synergies"] is None
    assert not any("synerg" in p for p in summary["plots"])
    assert summary["representations"]["latent_mean"]["components_95"] == 3


def test_cli_subcommand(tmp_path, capsys):
    write_rollout_file(tmp_path / "rollouts.h5")
    ap = argparse.ArgumentParser(prog="mimic")
    add_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(
        ["analyze", str(tmp_path / "rollouts.h5"), "--out", str(tmp_path / "o"), "--max-synergies", "4"]
    )
    assert args.max_components == 10
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "latent_mean (8-d): 3 components for 90 % of the variance, 3 for 95 %" in printed
    assert "3 synergies reach VAF 90 %" in printed
    assert str(tmp_path / "o" / "analysis.json") in printed
    assert len(json.loads((tmp_path / "o" / "analysis.json").read_text())["synergies"]["vaf"]) == 4


def test_missing_file(tmp_path):
    with pytest.raises(MimicError, match=r"nope\.h5: no such file.*mimic rollout"):
        analyze(tmp_path / "nope.h5", tmp_path / "out")


def test_not_a_rollout_file(tmp_path):
    path = tmp_path / "clips.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
        f["qpos"] = np.zeros((5, 3))
    with pytest.raises(MimicError, match=r"clips\.h5: format attribute is '', not 'mimic-rollouts'.*`mimic rollout`"):
        analyze(path, tmp_path / "out")
    (tmp_path / "notes.h5").write_text("not HDF5 at all")
    with pytest.raises(MimicError, match=r"notes\.h5: not an HDF5 file.*`mimic rollout`"):
        analyze(tmp_path / "notes.h5", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_format_version(tmp_path):
    path = tmp_path / "rollouts.h5"
    write_rollout_file(path)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(MimicError, match=r"rollouts\.h5: rollout format version 2 is not 1.*`mimic rollout`"):
        analyze(path, tmp_path / "out")


def test_inconsistent_shapes(tmp_path):
    path = tmp_path / "rollouts.h5"
    write_rollout_file(path)
    with h5py.File(path, "a") as f:
        del f["clips/clip_b/latent_mean"]
        f["clips/clip_b/latent_mean"] = np.zeros((2, 49, 8))
    with pytest.raises(MimicError, match=r"clip 'clip_b': 'latent_mean' has shape \(2, 49, 8\)"):
        analyze(path, tmp_path / "out")


def test_synergies_subsample_long_datasets(tmp_path, monkeypatch):
    import mimic_mjx.analysis.analyze as analyze_module

    write_rollout_file(tmp_path / "rollouts.h5")
    monkeypatch.setattr(analyze_module, "NMF_MAX_SAMPLES", 50)
    syn = analyze(tmp_path / "rollouts.h5", tmp_path / "out")["synergies"]
    assert syn["every_nth_step"] == 4 and syn["n_samples"] == 45  # ceil(180 / 50), ceil(180 / 4)
    assert syn["vaf"][2] > 0.99
