"""`mimic emg`: synthetic EMG with a known envelope, readers, mapping/alignment errors, the CLI end to end."""

from __future__ import annotations

import argparse
import datetime
import json

import h5py
import numpy as np
import pytest

from mimic_mjx.analysis.emg import (
    EmgConfig,
    EmgError,
    EmgWarning,
    compare_envelopes,
    compare_rollout,
    emg_envelope,
    reach_onset,
    resample_envelope,
)
from mimic_mjx.analysis.emg import add_parser as emg_add_parser
from mimic_mjx.analysis.emg_io import EmgRecording, read_emg, read_mapping, read_trial_table
from mimic_mjx.errors import MimicError

RATE = 10_000.0  # EMG sampling rate
CLIP_HZ = 200.0  # control rate of the fabricated rollout
STEPS = 200
MUSCLES = ["biceps", "triceps", "deltoid"]
CHANNELS = ["EMG_bic", "EMG_tri", "EMG_del"]
CLIPS = ["reach_a", "reach_b", "reach_c"]
ONSET = 40  # step at which the fabricated wrist starts to move


def smooth_activations(n_trials=3, steps=STEPS, seed=0) -> np.ndarray:
    """(trials, steps, muscles) in 0..1: a few Gaussian bumps per muscle, different for every trial."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / CLIP_HZ
    out = np.zeros((n_trials, steps, len(MUSCLES)))
    for k in range(n_trials):
        for m in range(len(MUSCLES)):
            for _ in range(3):
                c, w, h = rng.uniform(0, t[-1]), rng.uniform(0.04, 0.12), rng.uniform(0.3, 1.0)
                out[k, :, m] += h * np.exp(-0.5 * ((t - c) / w) ** 2)
    return out / out.max(axis=(0, 1))


def raw_emg(act: np.ndarray, act_t: np.ndarray, t_from: float, t_to: float, rng) -> np.ndarray:
    """Activation-modulated Gaussian noise + 50 Hz mains hum + DC offset at RATE, over act_t in [t_from, t_to]."""
    t = t_from + np.arange(int(round((t_to - t_from) * RATE)) + 1) / RATE
    a = np.stack([np.interp(t, act_t, act[:, m]) for m in range(act.shape[1])], axis=1)
    hum = 0.05 * np.sin(2 * np.pi * 50 * t)[:, None]
    return a * rng.standard_normal(a.shape) + hum + np.array([2.0, -1.0, 0.5])


def clip_times(steps=STEPS) -> np.ndarray:
    return np.arange(1, steps + 1) / CLIP_HZ  # state after each step (docs/rollout-format.md)


# ---------------------------------------------------------------------------------------------------------
# Signal processing on a known answer


def test_envelope_recovers_activation_and_matching_set_scores_best():
    act = smooth_activations()
    rng = np.random.default_rng(1)
    t = np.arange(STEPS) / CLIP_HZ
    envs = []
    for k in range(len(act)):
        raw = raw_emg(act[k], t, 0.0, t[-1], rng)
        envs.append(resample_envelope(emg_envelope(raw, RATE, EmgConfig()), RATE, t, CLIP_HZ))
    envs = np.stack(envs)
    assert envs.shape == act.shape
    for k in range(len(act)):
        for m in range(len(MUSCLES)):
            assert compare_envelopes(envs[k, :, m], act[k, :, m])["r"] > 0.9
    env_n = envs / envs.max(axis=(0, 1))  # per-muscle max over all trials, as the CLI does
    rolled = np.roll(act, 1, axis=2)  # another muscle's activation
    reversed_ = act[:, ::-1]  # time-reversed
    for m in range(len(MUSCLES)):
        good = np.mean([compare_envelopes(env_n[k, :, m], act[k, :, m])["mae"] for k in range(3)])
        for wrong in (rolled, reversed_):
            bad = np.mean([compare_envelopes(env_n[k, :, m], wrong[k, :, m])["mae"] for k in range(3)])
            assert good < bad


def test_compare_envelopes_known_values_and_nan():
    a = np.array([0.0, 1.0, 2.0, np.nan, 4.0])
    assert compare_envelopes(a, 2 * a + 1) == pytest.approx({"mae": 2.75, "r": 1.0})
    assert compare_envelopes(a, -a)["r"] == pytest.approx(-1.0)
    assert np.isnan(compare_envelopes(a, np.ones(5))["r"])  # flat activation: no correlation
    with pytest.raises(EmgError, match="length"):
        compare_envelopes(a, a[:3])


def test_envelope_mode_only_resamples():
    act = smooth_activations(1)[0]
    t = np.arange(STEPS) / CLIP_HZ
    t_in = np.arange(0, t[-1] + 1e-9, 1e-3)  # an envelope recorded at 1 kHz
    env_in = np.stack([np.interp(t_in, t, act[:, m]) for m in range(3)], axis=1)
    cfg = EmgConfig(is_envelope=True)
    assert np.array_equal(emg_envelope(env_in, 1000.0, cfg), env_in)
    out = resample_envelope(emg_envelope(env_in, 1000.0, cfg), 1000.0, t, CLIP_HZ)
    assert np.max(np.abs(out[5:-5] - act[5:-5])) < 0.02
    # Raw-EMG processing of the same input would high-pass it away.
    assert compare_envelopes(emg_envelope(env_in, 1000.0, EmgConfig(band_hz=(20, 400)))[::5, 0], act[:, 0])["r"] < 0.9


def test_config_validation_and_nyquist_clamp():
    for bad in ({"band_hz": (100, 20)}, {"envelope_hz": 0}, {"order": 0}, {"normalise": "zscore"}):
        with pytest.raises(EmgError):
            EmgConfig(**bad)
    rng = np.random.default_rng(0)
    with pytest.warns(EmgWarning, match="upper edge lowered"):
        env = emg_envelope(rng.standard_normal((2000, 1)), 1000.0, EmgConfig())  # 1000 Hz edge at 500 Hz Nyquist
    assert env.shape == (2000, 1) and np.all(env >= 0)


def test_resample_marks_outside_nan():
    env = np.linspace(0, 1, 1001)  # 1 s at 1 kHz
    out = resample_envelope(env, 1000.0, np.array([-0.1, 0.0, 0.5, 1.0, 1.2]), 100.0)
    assert np.isnan(out[0]) and np.isnan(out[-1])
    assert out[1:4] == pytest.approx([0.0, 0.5, 1.0], abs=0.02)


def test_reach_onset_abrupt_start():
    pos, t = wrist_path(), clip_times()
    assert reach_onset(pos, t, 0.1) == ONSET
    with pytest.raises(EmgError, match="does not move"):
        reach_onset(np.zeros((10, 3)), t[:10])


# ---------------------------------------------------------------------------------------------------------
# Readers


def test_csv_reader_trials_time_column_and_rate(tmp_path):
    path = tmp_path / "emg.csv"
    rows = ["trial,time,a,b"]
    for trial, n in (("x", 5), ("y", 4)):
        rows += [f"{trial},{10 + i / 2000:.6f},{i},{-i}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    rec = read_emg(path)
    assert rec.channels == ["a", "b"] and rec.rate_hz == pytest.approx(2000.0)
    assert list(rec.trials) == ["x", "y"] and rec.trials["y"].shape == (4, 2)
    assert rec.trials["x"][:, 1].tolist() == [0, -1, -2, -3, -4] and rec.t0_s["x"] == pytest.approx(10.0)
    with pytest.raises(EmgError, match="disagrees"):
        read_emg(path, rate_hz=1000.0)
    plain = tmp_path / "plain.csv"
    plain.write_text("m1;m2\n1;2\n3;4\n")
    rec = read_emg(plain, rate_hz=500.0)
    assert rec.channels == ["m1", "m2"] and rec.trials[""].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(EmgError, match="--rate"):
        read_emg(plain)


def test_nwb_reader_electrical_series_and_per_muscle_series(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from pynwb.ecephys import ElectricalSeries

    data = np.arange(200.0).reshape(100, 2)

    def new_file():
        return pynwb.NWBFile(
            session_description="emg", identifier="t", session_start_time=datetime.datetime.now(datetime.UTC)
        )

    nwb = new_file()
    grp = nwb.create_electrode_group(name="g", description="emg", location="arm", device=nwb.create_device("amp"))
    nwb.add_electrode_column(name="label", description="muscle")
    for label in ("biceps", "triceps"):
        nwb.add_electrode(group=grp, location="arm", label=label)
    region = nwb.create_electrode_table_region(region=[0, 1], description="all")
    nwb.add_acquisition(ElectricalSeries(name="EMG", data=data, electrodes=region, rate=2000.0, starting_time=1.5))
    with pynwb.NWBHDF5IO(str(tmp_path / "a.nwb"), "w") as io:
        io.write(nwb)
    rec = read_emg(tmp_path / "a.nwb")
    assert rec.channels == ["biceps", "triceps"] and rec.rate_hz == 2000.0 and rec.t0_s[""] == 1.5
    assert np.array_equal(rec.trials[""], data)

    nwb = new_file()
    mod = nwb.create_processing_module(name="emg", description="envelopes")
    stamps = np.arange(100) / 500.0
    for i, name in enumerate(("bic", "tri")):
        mod.add(pynwb.TimeSeries(name=name, data=data[:, i], unit="V", timestamps=stamps))
    with pynwb.NWBHDF5IO(str(tmp_path / "b.nwb"), "w") as io:
        io.write(nwb)
    rec = read_emg(tmp_path / "b.nwb")
    assert rec.channels == ["bic", "tri"] and rec.rate_hz == pytest.approx(500.0)
    assert np.array_equal(rec.trials[""], data)
    assert read_emg(tmp_path / "b.nwb", series="tri").channels == ["tri"]


def test_nwb_without_pynwb_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pynwb(name, *a, **k):
        if name.startswith("pynwb"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pynwb)
    (tmp_path / "x.nwb").write_bytes(b"")
    with pytest.raises(EmgError, match=r"pip install pynwb .*mimic-mjx\[nwb\]"):
        read_emg(tmp_path / "x.nwb")


def test_mapping_and_trial_table_files(tmp_path):
    (tmp_path / "m.yaml").write_text("EMG_bic: biceps\nEMG_tri: triceps\n")
    (tmp_path / "p.yaml").write_text("- [EMG_bic, biceps]\n- [EMG_tri, null]\n")
    assert read_mapping(tmp_path / "m.yaml") == {"EMG_bic": "biceps", "EMG_tri": "triceps"}
    assert read_mapping(tmp_path / "p.yaml") == {"EMG_bic": "biceps", "EMG_tri": None}
    (tmp_path / "t.csv").write_text("clip,start_sample,trial\nreach_a,100,1\nreach_b,50,\n")
    assert read_trial_table(tmp_path / "t.csv") == {
        "reach_a": {"start_sample": 100.0, "trial": "1"},
        "reach_b": {"start_sample": 50.0, "trial": None},
    }
    (tmp_path / "t.yaml").write_text("reach_a: 1.5\nreach_b: {start_sample: 3}\n")
    assert read_trial_table(tmp_path / "t.yaml")["reach_a"] == {"start_s": 1.5, "trial": None}
    (tmp_path / "bad.csv").write_text("clip,start_s,start_sample\nreach_a,1,2\n")
    with pytest.raises(EmgError, match="exactly one of start_s / start_sample"):
        read_trial_table(tmp_path / "bad.csv")


# ---------------------------------------------------------------------------------------------------------
# A fabricated rollout dataset (docs/rollout-format.md) and the comparison


def wrist_path(steps=STEPS) -> np.ndarray:
    """Still until step ONSET, then a straight reach at constant speed: the onset is exactly ONSET."""
    s = np.clip(np.arange(steps) - ONSET, 0, None) / CLIP_HZ
    return np.stack([0.01 + 0.05 * s, np.zeros(steps), 0.02 + 0.02 * s], axis=1)


def write_rollout(path, act: np.ndarray, seeds=2, lose_at=150) -> None:
    """One clip per trial of ``act`` (trials, T, 3 muscles); seed 1 loses tracking at ``lose_at``."""
    n, T, _ = act.shape
    actuators = [*MUSCLES, "extra_muscle"]
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="mimic-rollouts", format_version=1, body="test_arm", control_dt_s=1 / CLIP_HZ)
        f.attrs.update(seeds=seeds, stochastic=False, perturbation="", run_id="0" * 16)
        f["actuator_names"] = np.array(actuators, dtype="S")
        f["actuator_is_muscle"] = np.ones(len(actuators), bool)
        f["end_effectors"] = np.array(["elbow", "wrist"], dtype="S")
        for k, clip in enumerate(CLIPS[:n]):
            g = f.create_group(f"clips/{clip}")
            g.attrs.update(frames=T + 1, steps=T)
            tracked = np.ones((seeds, T), bool)
            tracked[1:, lose_at:] = False
            a = np.concatenate([act[k], np.full((T, 1), 0.3)], axis=1)
            activation = np.clip(a + 0.02 * rng.standard_normal((seeds, T, len(actuators))), 0, 1)
            activation[~tracked] = np.nan
            g.attrs["fraction_tracked"] = tracked.mean()
            g["time_s"] = clip_times(T)
            g["tracked"] = tracked
            g["activation"] = activation
            g["ctrl"] = activation
            ref = np.stack([np.zeros((T, 3)), wrist_path(T)], axis=1)
            g["reference_ee_pos"] = ref
            ee = np.repeat(ref[None], seeds, axis=0)
            ee[~tracked] = np.nan
            g["ee_pos"] = ee


def write_emg_csv(path, act: np.ndarray, start_step=ONSET, cut_s=0.0) -> None:
    """EMG trials named like the clips, each starting at step ``start_step`` (the reach onset) of its clip."""
    rng = np.random.default_rng(2)
    t = clip_times(act.shape[1])
    blocks = []
    for k, clip in enumerate(CLIPS[: len(act)]):
        raw = raw_emg(act[k], t, t[start_step], t[-1] - cut_s, rng)
        time = np.arange(len(raw)) / RATE
        blocks.append(
            "\n".join(
                f"{clip},{ti:.6f}," + ",".join(f"{v:.5f}" for v in row) for ti, row in zip(time, raw, strict=True)
            )
        )
    path.write_text("trial,time_s," + ",".join(CHANNELS) + "\n" + "\n".join(blocks) + "\n")


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="mimic")
    emg_add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["emg", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("emg")
    act = smooth_activations()
    write_rollout(d / "data.h5", act)
    write_emg_csv(d / "emg.csv", act)
    (d / "muscles.yaml").write_text("".join(f"{c}: {m}\n" for c, m in zip(CHANNELS, MUSCLES, strict=True)))
    return d, act


def test_cli_end_to_end_onset_alignment(dataset, tmp_path, capsys):
    d, _ = dataset
    out = tmp_path / "out"
    assert run_cli([d / "data.h5", "--emg", d / "emg.csv", "--map", d / "muscles.yaml", "--out", out]) == 0
    summary = json.loads((out / "emg.json").read_text())
    assert [t["onset_step"] for t in summary["trials"]] == [ONSET] * 3
    assert summary["onset_end_effector"] == "wrist" and summary["emg_rate_hz"] == pytest.approx(RATE)
    for m in MUSCLES:
        res = summary["per_muscle"][m]
        assert res["r"] > 0.9 and res["mae"] < 0.15, (m, res)
        assert set(res["trials"]) == set(CLIPS)
    assert sorted(p.name for p in out.glob("*.png")) == [f"{c}_emg.png" for c in CLIPS]
    assert "MAE" in capsys.readouterr().out
    # Swapping two channels' muscles must score worse: the comparison is not vacuous.
    (tmp_path / "swap.yaml").write_text(f"{CHANNELS[0]}: {MUSCLES[1]}\n{CHANNELS[1]}: {MUSCLES[0]}\n")
    run_cli([d / "data.h5", "--emg", d / "emg.csv", "--map", tmp_path / "swap.yaml", "--out", tmp_path / "o2"])
    swapped = json.loads((tmp_path / "o2" / "emg.json").read_text())["per_muscle"]
    for m in MUSCLES[:2]:
        assert swapped[m]["r"] < summary["per_muscle"][m]["r"] - 0.2


def test_trial_table_on_continuous_envelope(dataset, tmp_path):
    d, act = dataset
    # One continuous envelope at 1 kHz covering each clip from its start, with gaps between clips.
    t = clip_times()
    starts, pieces, pos = {}, [], 0.3
    for k, clip in enumerate(CLIPS):
        tt = np.arange(0, t[-1] + 1e-9, 1e-3)
        pieces += [np.zeros((300, 3)), np.stack([np.interp(tt, t, act[k, :, m]) for m in range(3)], axis=1)]
        starts[clip] = pos
        pos += len(tt) / 1000.0 + 0.3
    env = np.concatenate([*pieces, np.zeros((300, 3))])
    lines = ["t," + ",".join(CHANNELS)] + [
        f"{i / 1000:.4f}," + ",".join(f"{v:.5f}" for v in r) for i, r in enumerate(env)
    ]
    (tmp_path / "env.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "trials.yaml").write_text("".join(f"{c}: {{start_s: {s}}}\n" for c, s in starts.items()))
    out = tmp_path / "out"
    argv = [d / "data.h5", "--emg", tmp_path / "env.csv", "--map", d / "muscles.yaml", "--out", out, "--envelope"]
    assert run_cli([*argv, "--trials", tmp_path / "trials.yaml", "--plots", "0"]) == 0
    summary = json.loads((out / "emg.json").read_text())
    assert summary["alignment"] == "trial table" and not list(out.glob("*.png"))
    for m in MUSCLES:
        assert summary["per_muscle"][m]["r"] > 0.97 and summary["per_muscle"][m]["mae"] < 0.05
    # Starting every clip 50 ms late in the EMG must hurt.
    (tmp_path / "late.yaml").write_text("".join(f"{c}: {{start_s: {s + 0.05}}}\n" for c, s in starts.items()))
    run_cli([*argv, "--trials", tmp_path / "late.yaml", "--plots", "0", "--out", tmp_path / "late"])
    late = json.loads((tmp_path / "late" / "emg.json").read_text())["per_muscle"]
    assert all(late[m]["mae"] > 2 * summary["per_muscle"][m]["mae"] for m in MUSCLES)


def _recording(act, **kw) -> EmgRecording:
    rng = np.random.default_rng(3)
    t = clip_times()
    trials = {c: raw_emg(act[k], t, t[ONSET], t[-1] - kw.get("cut_s", 0.0), rng) for k, c in enumerate(CLIPS)}
    return EmgRecording(list(CHANNELS), RATE, trials, dict.fromkeys(CLIPS, 0.0))


def test_mapping_errors_list_the_names(dataset):
    d, act = dataset
    rec = _recording(act)
    with pytest.raises(EmgError, match=r"not in .*actuators: biceps, triceps, deltoid, extra_muscle"):
        compare_rollout(d / "data.h5", rec, {"EMG_bic": "brachialis"})
    with pytest.raises(EmgError, match=r"map to no actuator; actuators: biceps, triceps"):
        compare_rollout(d / "data.h5", rec, {"EMG_bic": None})
    with pytest.raises(EmgError, match=r"EMG channels \['EMG_xyz'\].*channels: \['EMG_bic'"):
        compare_rollout(d / "data.h5", rec, {"EMG_xyz": "biceps"})
    assert issubclass(EmgError, MimicError)


def test_emg_too_short_names_trial_and_durations(dataset):
    d, act = dataset
    rec = _recording(act, cut_s=0.2)
    msg = r"EMG trial 'reach_a' is too short for clip 'reach_a': it lasts 0\.595 s but the clip needs it up to 0\.795"
    with pytest.raises(EmgError, match=msg):
        compare_rollout(d / "data.h5", rec, dict(zip(CHANNELS, MUSCLES, strict=True)))


def test_untracked_steps_are_not_scored(dataset):
    d, act = dataset
    res = compare_rollout(d / "data.h5", _recording(act), dict(zip(CHANNELS, MUSCLES, strict=True)))
    tr = res["_traces"]["reach_a"]
    assert np.isnan(tr["emg"][:ONSET]).all() and np.isfinite(tr["emg"][ONSET:]).all()
    assert np.isnan(tr["activation"][1, 150:]).all()  # seed 1 lost tracking there
    assert res["clips_without_emg"] == []
