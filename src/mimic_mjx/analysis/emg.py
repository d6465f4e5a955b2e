"""`mimic emg`: compare recorded EMG with the simulated muscle activations of a rollout dataset.

Pipeline per EMG channel and trial: remove the offset, band-pass, full-wave
rectify, low-pass (the envelope), resample to the rollout's control steps,
normalise per muscle, then score against the mapped actuator's activation over
the tracked steps (mean absolute error, Pearson r).

Alignment: EMG trial time 0 is its first sample. With ``--trials`` a table gives,
per clip, the EMG time of the clip's start (clip time 0; ``start_s`` on the
recording's clock, i.e. its time column / NWB timestamps, or ``start_sample``).
Without it, each EMG trial is assumed to start at the reach onset: the first
control step at which the reference wrist speed exceeds ``onset_threshold`` of
its peak in that clip; steps before the onset have no EMG and are not scored.
EMG trials pair with clips of the same name (or, if no name matches and the
counts agree, in order, with a warning).

Normalisation (``max`` or ``p99``) is per muscle, over the aligned steps of all
paired trials: the EMG envelope by its own level, the activation (tracked steps,
all seeds) by its own, so the arbitrary electrode gain drops out. Metrics are
computed per seed over the steps that are tracked and covered by EMG, then
averaged over seeds (per trial) and over trials (per muscle).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal

from mimic_mjx.analysis.emg_io import EmgError, EmgRecording, read_emg, read_mapping, read_rollout, read_trial_table
from mimic_mjx.files import atomic_path, write_text

__all__ = [
    "EmgConfig",
    "EmgError",
    "EmgWarning",
    "add_parser",
    "compare_envelopes",
    "compare_rollout",
    "emg_envelope",
    "reach_onset",
    "resample_envelope",
    "run",
]

NORMALISE = ("max", "p99", "none")
# Highest band-pass edge as a fraction of Nyquist: Butterworth designs fail at 1.
NYQUIST_MARGIN = 0.95


class EmgWarning(UserWarning):
    """A setting was adjusted or data was paired by assumption; printed by the CLI."""


@dataclass(frozen=True)
class EmgConfig:
    band_hz: tuple[float, float] = (20.0, 1000.0)
    envelope_hz: float = 50.0
    order: int = 4
    is_envelope: bool = False  # the input already is an envelope: only resample and normalise
    normalise: str = "max"  # per muscle over all trials: "max", "p99" (99th percentile) or "none"

    def __post_init__(self):
        lo, hi = (float(b) for b in self.band_hz)
        if not 0 < lo < hi:
            raise EmgError(f"band-pass needs 0 < LOW < HIGH Hz, got {lo:g} {hi:g}")
        if not self.envelope_hz > 0:
            raise EmgError(f"envelope low-pass must be a positive number of Hz, got {self.envelope_hz:g}")
        if not (isinstance(self.order, int) and 1 <= self.order <= 8):
            raise EmgError(f"filter order must be an integer from 1 to 8, got {self.order!r}")
        if self.normalise not in NORMALISE:
            raise EmgError(f"normalise must be one of {', '.join(NORMALISE)}, got {self.normalise!r}")


def _filter(x: np.ndarray, sos: np.ndarray, what: str, padtype: str = "odd") -> np.ndarray:
    try:
        return signal.sosfiltfilt(sos, x, axis=0, padtype=padtype)
    except ValueError:
        raise EmgError(f"{what}: {len(x)} samples are too few to filter; is the trial or --rate right?") from None


def emg_envelope(raw: np.ndarray, rate_hz: float, cfg: EmgConfig = EmgConfig()) -> np.ndarray:
    """Envelope of raw EMG (N,) or (N, C) sampled at ``rate_hz``, same shape, non-negative."""
    x = np.asarray(raw, dtype=float)
    if cfg.is_envelope:
        return x.copy()
    nyq = 0.5 * rate_hz
    lo, hi = cfg.band_hz
    if hi >= NYQUIST_MARGIN * nyq:
        hi = NYQUIST_MARGIN * nyq
        warnings.warn(f"band-pass upper edge lowered to {hi:g} Hz, below Nyquist at {rate_hz:g} Hz", EmgWarning, 2)
    if lo >= hi:
        raise EmgError(f"band-pass {lo:g}-{hi:g} Hz is empty at {rate_hz:g} Hz sampling; lower --band LOW")
    if cfg.envelope_hz >= NYQUIST_MARGIN * nyq:
        raise EmgError(f"envelope low-pass {cfg.envelope_hz:g} Hz is not below Nyquist at {rate_hz:g} Hz")
    x = x - x.mean(axis=0)
    x = _filter(x, signal.butter(cfg.order, (lo, hi), btype="bandpass", fs=rate_hz, output="sos"), "band-pass")
    # Even padding: the default odd extension mirrors the rectified signal about its (noisy) first
    # sample and drags the envelope towards zero at a trial's edges.
    lowpass = signal.butter(cfg.order, cfg.envelope_hz, fs=rate_hz, output="sos")
    env = _filter(np.abs(x), lowpass, "low-pass", padtype="even")
    # Zero-phase filtering rings slightly below zero; an activation never does.
    return np.maximum(env, 0.0)


def resample_envelope(env: np.ndarray, rate_hz: float, times_s: np.ndarray, out_rate_hz: float) -> np.ndarray:
    """Envelope (N,) or (N, C) at ``times_s`` (s after its first sample); NaN outside the recording.

    Down-sampling goes through resample_poly so that content above the new
    Nyquist frequency is filtered out rather than aliased.
    """
    x = np.asarray(env, dtype=float)
    x2 = x.reshape(len(x), -1)
    if out_rate_hz < rate_hz:
        ratio = Fraction(out_rate_hz / rate_hz).limit_denominator(1000)
        if ratio.numerator == 0:
            raise EmgError(f"cannot resample {rate_hz:g} Hz EMG to {out_rate_hz:g} Hz")
        x2 = signal.resample_poly(x2, ratio.numerator, ratio.denominator, axis=0, padtype="line")
        rate_hz = rate_hz * ratio.numerator / ratio.denominator
    t = np.arange(len(x2)) / rate_hz
    times = np.asarray(times_s, dtype=float)
    out = np.stack([np.interp(np.clip(times, 0, t[-1]), t, c) for c in x2.T], axis=-1)
    out[(times < -0.5 / rate_hz) | (times > t[-1] + 0.5 / rate_hz)] = np.nan
    return out.reshape(times.shape + x.shape[1:])


def reach_onset(positions: np.ndarray, time_s: np.ndarray, threshold: float = 0.1) -> int:
    """First step whose speed (central differences of (T, 3) positions) exceeds ``threshold`` x its peak."""
    if len(positions) < 2:
        raise EmgError("a clip needs at least 2 steps to find the reach onset")
    speed = np.linalg.norm(np.gradient(np.asarray(positions, float), np.asarray(time_s, float), axis=0), axis=-1)
    peak = np.nanmax(speed) if np.isfinite(speed).any() else np.nan
    if not peak > 0:
        raise EmgError("the reference wrist does not move, so there is no reach onset; pass --trials FILE")
    return int(np.argmax(speed > threshold * peak))


def compare_envelopes(emg_env: np.ndarray, activation: np.ndarray) -> dict:
    """Mean absolute error and Pearson r of two equally long traces over the steps where both are finite."""
    a, b = np.asarray(emg_env, float).ravel(), np.asarray(activation, float).ravel()
    if a.shape != b.shape:
        raise EmgError(f"EMG envelope and activation differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        return {"mae": float("nan"), "r": float("nan")}
    da, db = a - a.mean(), b - b.mean()
    den = np.sqrt(np.sum(da * da) * np.sum(db * db))
    r = float(np.sum(da * db) / den) if den > 0 else float("nan")  # a flat trace has no correlation
    return {"mae": float(np.mean(np.abs(a - b))), "r": r}


def _scale(values: np.ndarray, method: str) -> float:
    v = values[np.isfinite(values)]
    if method == "none" or v.size == 0:
        return 1.0
    s = float(np.max(v) if method == "max" else np.percentile(v, 99))
    return s if s > 0 else 1.0  # a silent muscle stays at zero


def _pair_trials(rec: EmgRecording, clips: list[str], table: dict | None) -> dict[str, tuple[str, float | None]]:
    """Clip -> (EMG trial, offset of clip time 0 in that trial in s, or None for onset alignment)."""
    named = [t for t in rec.trials if t != ""]
    if table is not None:
        pairs = {}
        for clip, row in table.items():
            if clip not in clips:
                raise EmgError(f"trial table names clip {clip!r}, not in the rollout; clips: {', '.join(clips)}")
            trial = row["trial"] or ("" if not named else clip)
            if trial not in rec.trials:
                raise EmgError(f"trial table: EMG trial {trial!r} for clip {clip!r} not in the EMG; trials: {named}")
            start = row.get("start_s")
            offset = start - rec.t0_s[trial] if start is not None else row["start_sample"] / rec.rate_hz
            pairs[clip] = (trial, offset)
        return pairs
    if not named:
        if len(clips) != 1:
            raise EmgError(f"one continuous EMG recording for {len(clips)} clips: pass --trials FILE with their starts")
        return {clips[0]: ("", None)}
    matched = {c: (c, None) for c in clips if c in rec.trials}
    if matched:
        return matched
    if len(named) == len(clips):
        warnings.warn(f"EMG trials paired with clips in order: {dict(zip(named, clips, strict=True))}", EmgWarning, 2)
        return {c: (t, None) for t, c in zip(named, clips, strict=True)}
    raise EmgError(f"EMG trials {named} match no clip names ({', '.join(clips)}) and differ in number; use --trials")


def compare_rollout(
    data_path: str | Path,
    rec: EmgRecording,
    mapping: dict[str, str | None],
    cfg: EmgConfig = EmgConfig(),
    table: dict | None = None,
    onset_threshold: float = 0.1,
) -> dict:
    """Score every paired clip; returns the JSON summary plus ``_traces`` (arrays for plotting)."""
    if not 0 < onset_threshold < 1:
        raise EmgError(f"onset threshold is a fraction of the peak wrist speed in (0, 1), got {onset_threshold:g}")
    unknown = [c for c in mapping if c not in rec.channels]
    if unknown:
        raise EmgError(f"muscle map names EMG channels {unknown} not in the recording; channels: {rec.channels}")
    ro = read_rollout(data_path, mapping)
    muscles = list(mapping.values())
    if len(set(muscles)) != len(muscles):
        raise EmgError(f"muscle map maps several channels to one actuator: {sorted(mapping.items())}")
    chans = [rec.channels.index(c) for c in mapping]
    dt, clips = ro["dt"], ro["clips"]
    traces, trials = {}, []
    for clip, (trial, offset) in _pair_trials(rec, list(clips), table).items():
        c = clips[clip]
        onset = None
        if offset is None:
            if c["wrist"] is None:
                raise EmgError("the rollout has no end effectors for onset detection; pass --trials FILE")
            onset = reach_onset(c["wrist"], c["time_s"], onset_threshold)
            offset = -float(c["time_s"][onset])
        raw = rec.trials[trial][:, chans]
        if not np.isfinite(raw).all():
            # Filters and resample_poly would smear a single NaN over the whole trial.
            bad = int(np.sum(~np.isfinite(raw)))
            raise EmgError(f"EMG trial {trial or '(continuous)'!r} has {bad} missing (NaN/inf) samples; fill them")
        times = offset + c["time_s"]
        duration = (len(raw) - 1) / rec.rate_hz
        if times[-1] > duration + 0.5 * dt:
            raise EmgError(
                f"EMG trial {trial or '(continuous)'!r} is too short for clip {clip!r}: it lasts {duration:.3f} s "
                f"but the clip needs it up to {times[-1]:.3f} s ({len(c['time_s'])} steps of {dt:g} s)"
            )
        env = resample_envelope(emg_envelope(raw, rec.rate_hz, cfg), rec.rate_hz, times, 1.0 / dt)
        traces[clip] = {"time_s": c["time_s"], "emg": env, "activation": c["activation"]}
        trials.append({"clip": clip, "emg_trial": trial, "clip_start_in_emg_s": offset, "onset_step": onset})
    if not traces:
        raise EmgError("no clip of the rollout is paired with an EMG trial")
    # Both sides are scaled by their own per-muscle level over all compared trials (and seeds), so that
    # the unknown electrode gain drops out and EMG and activation share a 0..1 range.
    scales = {}
    for i, m in enumerate(muscles):
        e = _scale(np.concatenate([t["emg"][:, i] for t in traces.values()]), cfg.normalise)
        a = _scale(np.concatenate([t["activation"][..., i].ravel() for t in traces.values()]), cfg.normalise)
        scales[m] = {"emg": e, "activation": a}
        for t in traces.values():
            t["emg"][:, i] /= e
            t["activation"][..., i] /= a
    per_muscle = {}
    for i, (ch, m) in enumerate(mapping.items()):
        by_trial = {}
        for clip, t in traces.items():
            seeds = [compare_envelopes(t["emg"][:, i], act[:, i]) for act in t["activation"]]
            by_trial[clip] = {k: _nanmean([s[k] for s in seeds]) for k in ("mae", "r")}
        per_muscle[m] = {"channel": ch, **{k: _nanmean([v[k] for v in by_trial.values()]) for k in ("mae", "r")}}
        per_muscle[m].update(normalised_by=scales[m], trials=by_trial)
    return {
        "format": "mimic-emg",
        "config": asdict(cfg),
        "alignment": "trial table" if table is not None else f"reach onset ({onset_threshold:g} of peak speed)",
        "onset_end_effector": ro["wrist"] if table is None else None,
        "emg_rate_hz": rec.rate_hz,
        "clip_rate_hz": 1.0 / dt,
        "trials": trials,
        "clips_without_emg": [c for c in clips if c not in traces],
        "per_muscle": per_muscle,
        "_traces": traces,
    }


def _nanmean(xs) -> float:
    xs = np.asarray(xs, float)
    return float(np.mean(xs[np.isfinite(xs)])) if np.isfinite(xs).any() else float("nan")


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return None if isinstance(x, float) and not np.isfinite(x) else x


def plot_trial(clip: str, trace: dict, muscles: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(muscles), 1, figsize=(7, 1.6 * len(muscles) + 0.6), sharex=True, squeeze=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps after every seed lost tracking
        act = np.nanmean(trace["activation"], axis=0)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(trace["time_s"], trace["emg"][:, i], "k-", lw=1.2, label="EMG envelope")
        ax.plot(trace["time_s"], act[:, i], "C1--", lw=1.2, label="activation (seed mean)")
        ax.set_ylabel(muscles[i], fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("clip time (s)")
    fig.suptitle(f"{clip}: normalised EMG vs simulated activation")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("emg", help="compare recorded EMG with the simulated muscle activations of a rollout")
    p.add_argument("data", metavar="DATA", help="rollout dataset (HDF5) from mimic rollout / mimic experiment")
    p.add_argument("--emg", required=True, help="EMG recording: .csv (a column per channel) or .nwb")
    p.add_argument("--map", required=True, help="YAML {emg_channel: actuator_name} (or a list of pairs)")
    p.add_argument("--out", required=True, help="output folder for emg.json and plots")
    p.add_argument("--rate", type=float, help="EMG sampling rate in Hz (default: from the file's time stamps)")
    p.add_argument("--series", help="NWB: the TimeSeries/ElectricalSeries to read, if the file has several")
    p.add_argument("--envelope", action="store_true", help="the EMG already is an envelope: only resample it")
    p.add_argument("--band", nargs=2, type=float, metavar=("LOW", "HIGH"), help="band-pass, Hz (default 20 1000)")
    p.add_argument("--lowpass", type=float, metavar="HZ", help="envelope low-pass, Hz (default 50)")
    p.add_argument("--order", type=int, default=4, help="Butterworth filter order (default 4)")
    p.add_argument("--normalise", choices=NORMALISE, default="max", help="per-muscle normalisation (default max)")
    p.add_argument("--trials", help="CSV/YAML table: clip, start_s or start_sample (clip start in the EMG), trial")
    p.add_argument(
        "--onset-threshold",
        type=float,
        default=0.1,
        help="without --trials, each EMG trial starts at the reach onset: the first step where the reference "
        "wrist speed exceeds this fraction of its peak (default 0.1)",
    )
    p.add_argument("--plots", type=int, help="plot at most this many clips (default all; 0: none)")
    p.set_defaults(func=run)


def run(args) -> int:
    defaults = EmgConfig()
    cfg = EmgConfig(
        band_hz=tuple(args.band) if args.band else defaults.band_hz,
        envelope_hz=args.lowpass if args.lowpass is not None else defaults.envelope_hz,
        order=args.order,
        is_envelope=args.envelope,
        normalise=args.normalise,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmgWarning)
        rec = read_emg(args.emg, args.rate, args.series)
        table = read_trial_table(args.trials) if args.trials else None
        result = compare_rollout(args.data, rec, read_mapping(args.map), cfg, table, args.onset_threshold)
    seen = set()
    for w in caught:
        if issubclass(w.category, EmgWarning):
            if str(w.message) not in seen:  # the same adjustment is made for every trial
                print(f"mimic emg: warning: {w.message}", file=sys.stderr)
            seen.add(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    out = Path(args.out)
    traces = result.pop("_traces")
    result.update(data=str(args.data), emg=str(args.emg))
    muscles = list(result["per_muscle"])
    n = len(traces) if args.plots is None else max(args.plots, 0)
    plots = [out / f"{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in c)}_emg.png" for c in traces][:n]
    for (clip, trace), path in zip(traces.items(), plots, strict=False):
        plot_trial(clip, trace, muscles, path)
    result["plots"] = [p.name for p in plots]
    write_text(out / "emg.json", json.dumps(_json_safe(result), indent=2) + "\n")
    for m, v in result["per_muscle"].items():
        print(f"{m:24s} channel {v['channel']:16s} MAE {v['mae']:.3f}  r {v['r']:+.3f}")
    print(f"wrote {out / 'emg.json'} and {len(plots)} plot(s)")
    return 0
