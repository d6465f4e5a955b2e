"""Reading EMG recordings (CSV, NWB), channel-to-muscle maps and trial tables for `mimic emg`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mimic_mjx.errors import MimicError
from mimic_mjx.files import open_hdf5, read_text, require_regular_file

TIME_COLUMNS = ("time", "t", "time_s")
TRIAL_COLUMN = "trial"
# Relative spread of sample intervals still counted as one sampling rate.
RATE_TOLERANCE = 0.01


class EmgError(MimicError):
    """An EMG recording, muscle map or trial table is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class EmgRecording:
    """EMG channels split into trials (one unnamed trial for a continuous recording).

    ``trials[name]`` is (N_i, C) in the order of ``channels``; ``t0_s[name]`` is the
    recording clock's time of that trial's first sample (0 without a clock), the
    origin of a trial table's ``start_s``.
    """

    channels: list[str]
    rate_hz: float
    trials: dict[str, np.ndarray]
    t0_s: dict[str, float]


def read_emg(path: str | Path, rate_hz: float | None = None, series: str | None = None) -> EmgRecording:
    path = require_regular_file(path, EmgError, "EMG file")
    if rate_hz is not None and not rate_hz > 0:
        raise EmgError(f"--rate must be a positive number of Hz, got {rate_hz}")
    if path.suffix.lower() == ".nwb":
        return read_emg_nwb(path, rate_hz, series)
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return read_emg_csv(path, rate_hz)
    raise EmgError(f"{path}: unknown EMG format {path.suffix!r}; expected .csv (one column per channel) or .nwb")


def _rate_from_times(times: list[np.ndarray], where: str) -> float:
    dts = np.concatenate([np.diff(np.asarray(t, float)) for t in times if len(t) > 1] or [np.zeros(0)])
    if dts.size == 0:
        raise EmgError(f"{where}: too few samples to infer the sampling rate; pass --rate HZ")
    dt = float(np.median(dts))
    if not dt > 0 or np.max(np.abs(dts - dt)) > RATE_TOLERANCE * dt:
        raise EmgError(
            f"{where}: time stamps are not uniformly increasing (intervals {dts.min():.6g}..{dts.max():.6g} s); "
            "resample the recording or pass --rate HZ to ignore them"
        )
    return float(f"{1.0 / dt:.9g}")  # 10000.0, not 10000.0000000011 from rounded time stamps


def _pick_rate(given: float | None, inferred: float | None, where: str) -> float:
    if given is None:
        if inferred is None:
            raise EmgError(f"{where}: no time column or rate in the file; pass --rate HZ")
        return inferred
    if inferred is not None and abs(inferred - given) > RATE_TOLERANCE * given:
        raise EmgError(f"{where}: --rate {given:g} Hz disagrees with the file's time stamps ({inferred:.6g} Hz)")
    return float(given)


def _csv_rows(path: Path, read):
    try:
        return read()
    except csv.Error as exc:  # e.g. a field longer than the csv module's limit: not a table of numbers
        raise EmgError(f"{path}: not a CSV table ({exc})") from None


def read_emg_csv(path: str | Path, rate_hz: float | None = None) -> EmgRecording:
    path = Path(path)
    text = read_text(path, EmgError, "EMG recording (CSV)")  # binary data named .csv: one clear line
    head = text.split("\n", 1)[0]
    delim = "\t" if "\t" in head else ";" if head.count(";") > head.count(",") else ","
    rows = _csv_rows(path, lambda: list(csv.reader(io.StringIO(text, newline=""), delimiter=delim)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise EmgError(f"{path}: expected a header of channel names and at least one row of samples")
    header = [h.strip() for h in rows[0]]
    if any(len(r) != len(header) for r in rows[1:]):
        bad = next(i for i, r in enumerate(rows[1:], start=2) if len(r) != len(header))
        raise EmgError(f"{path}: line {bad} has a different number of columns than the header ({len(header)})")
    cells = np.asarray(rows[1:], dtype=object)
    lower = [h.lower() for h in header]
    time_col = next((lower.index(n) for n in TIME_COLUMNS if n in lower), None)
    trial_col = lower.index(TRIAL_COLUMN) if TRIAL_COLUMN in lower else None
    chan_cols = [i for i in range(len(header)) if i not in (time_col, trial_col)]
    if not chan_cols:
        raise EmgError(f"{path}: no channel columns besides time/trial (header: {', '.join(header)})")

    def numeric(col: int) -> np.ndarray:
        try:
            return np.asarray([float(c) for c in cells[:, col]])
        except ValueError as exc:
            raise EmgError(f"{path}: column {header[col]!r} is not numeric ({exc})") from None

    data = np.stack([numeric(c) for c in chan_cols], axis=1)
    labels = np.asarray([str(c).strip() for c in cells[:, trial_col]]) if trial_col is not None else None
    names = list(dict.fromkeys(labels)) if labels is not None else [""]
    masks = {n: labels == n for n in names} if labels is not None else {"": np.ones(len(data), bool)}
    times = numeric(time_col) if time_col is not None else None
    inferred = _rate_from_times([times[m] for m in masks.values()], str(path)) if times is not None else None
    rate = _pick_rate(rate_hz, inferred, str(path))
    return EmgRecording(
        channels=[header[c] for c in chan_cols],
        rate_hz=rate,
        trials={n: data[m] for n, m in masks.items()},
        t0_s={n: float(times[m][0]) if times is not None else 0.0 for n, m in masks.items()},
    )


def _nwb_series(nwb) -> dict:
    from pynwb import TimeSeries

    found = {}

    def visit(obj, prefix: str) -> None:
        if isinstance(obj, TimeSeries):
            found[prefix + obj.name] = obj
        # LFP / FilteredEphys-style containers hold their series in a dict attribute.
        for attr in ("electrical_series", "time_series"):
            for s in (getattr(obj, attr, None) or {}).values():
                visit(s, prefix + obj.name + "/")

    for obj in nwb.acquisition.values():
        visit(obj, "acquisition/")
    for mod in nwb.processing.values():
        for obj in mod.data_interfaces.values():
            visit(obj, f"processing/{mod.name}/")
    return found


def _nwb_channel_names(s, n: int) -> list[str]:
    table = getattr(s, "electrodes", None)
    if table is not None:
        rows = table.table.to_dataframe().iloc[list(table.data[:])]
        for col in ("label", "location"):
            if col in rows.columns and rows[col].astype(str).nunique() == n:
                return [str(v) for v in rows[col]]
    if n == 1:
        return [s.name]
    # Without an electrodes table, a description "biceps, triceps, ..." names the columns.
    desc = [d.strip() for d in (s.description or "").replace(";", ",").split(",")]
    if len(desc) == n and all(desc) and len(set(desc)) == n:
        return desc
    return [f"{s.name}_{i}" for i in range(n)]


def read_emg_nwb(path: str | Path, rate_hz: float | None = None, series: str | None = None) -> EmgRecording:
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise EmgError("reading NWB files needs pynwb: pip install pynwb (or pip install mimic-mjx[nwb])") from None
    open_hdf5(path, EmgError, "NWB file").close()  # text or other data named .nwb: one clear line
    try:
        with NWBHDF5IO(str(path), "r") as reader:
            channels, data, inferred, t0 = _nwb_channels(reader.read(), Path(path), series)
    except EmgError:
        raise
    except Exception as exc:  # pynwb, hdmf and h5py have many words for an HDF5 file that is not NWB, or damaged
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise EmgError(
            f"cannot read {path} as NWB EMG ({type(exc).__name__}: {reason}); is it an NWB file with EMG series?"
        ) from None
    return EmgRecording(channels, _pick_rate(rate_hz, inferred, str(path)), {"": data}, {"": t0})


def _nwb_channels(nwb, path: Path, series: str | None) -> tuple[list[str], np.ndarray, float | None, float]:
    """Channel names, samples (N, C), the rate the file states (or None) and its first sample's time."""
    found = _nwb_series(nwb)
    if series is not None:
        hits = [k for k in found if k == series or k.rsplit("/", 1)[-1] == series]
        if len(hits) != 1:
            raise EmgError(f"{path}: no single series named {series!r}; series: {', '.join(found) or 'none'}")
        found = {hits[0]: found[hits[0]]}
    if not found:
        raise EmgError(f"{path}: no TimeSeries/ElectricalSeries under acquisition or processing")
    items = list(found.items())
    shapes = {np.shape(s.data) if len(np.shape(s.data)) == 1 else None for _, s in items}
    if len(items) > 1 and (None in shapes or len(shapes) > 1):
        raise EmgError(
            f"{path}: several series of different shapes ({', '.join(found)}); choose one with --series NAME"
        )
    # One series of (N, C), or several 1-D series of one length (one per muscle).
    blocks, channels = [], []
    for key, s in items:
        data = np.asarray(s.data[:], dtype=float)
        data = data[:, None] if data.ndim == 1 else data.reshape(len(data), -1)
        blocks.append(data)
        channels += _nwb_channel_names(s, data.shape[1]) if len(items) == 1 else [key.rsplit("/", 1)[-1]]
    s = items[0][1]
    if s.rate is not None:
        inferred, t0 = float(s.rate), float(s.starting_time or 0.0)
    elif s.timestamps is not None:
        stamps = np.asarray(s.timestamps[:], float)
        inferred, t0 = _rate_from_times([stamps], str(path)), float(stamps[0])
    else:
        inferred, t0 = None, 0.0
    return channels, np.hstack(blocks), inferred, t0


def _load_yaml(path: str | Path, what: str):
    text = read_text(path, EmgError, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise EmgError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}; fix the syntax") from None


def read_mapping(path: str | Path) -> dict[str, str | None]:
    """``{emg_channel: actuator}`` from a YAML mapping or a list of [channel, actuator] pairs."""
    raw = _load_yaml(path, "muscle map")
    if isinstance(raw, list) and all(isinstance(p, list | tuple) and len(p) == 2 for p in raw):
        pairs = [(str(c), a) for c, a in raw]
    elif isinstance(raw, dict):
        pairs = [(str(c), a) for c, a in raw.items()]
    else:
        raise EmgError(f"{path}: expected a mapping `emg_channel: actuator_name` or a list of [channel, actuator]")
    chans = [c for c, _ in pairs]
    if len(set(chans)) != len(chans):
        raise EmgError(f"{path}: channel listed twice: {sorted({c for c in chans if chans.count(c) > 1})}")
    return {c: (None if a is None else str(a)) for c, a in pairs}


def read_trial_table(path: str | Path) -> dict[str, dict]:
    """Clip name -> {"start_s" or "start_sample": number, "trial": EMG trial or None}.

    CSV columns ``clip``, ``start_s`` or ``start_sample``, optional ``trial``; YAML: a
    list of such records, or ``{clip: {...}}``, or ``{clip: seconds}``.
    """
    path = require_regular_file(path, EmgError, "trial table")
    if path.suffix.lower() in (".yaml", ".yml"):
        raw = _load_yaml(path, "trial table")
        if isinstance(raw, dict):
            raw = [{"clip": k, **(v if isinstance(v, dict) else {"start_s": v})} for k, v in raw.items()]
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise EmgError(f"{path}: expected {{clip: {{start_s: ...}}}} or a list of records with a clip key")
        records = raw
    else:
        text = read_text(path, EmgError, "trial table")
        rows = _csv_rows(path, lambda: list(csv.DictReader(io.StringIO(text, newline=""))))
        records = [{str(k).strip().lower(): v for k, v in r.items()} for r in rows]
    table = {}
    for i, r in enumerate(records, start=1):
        has = [k for k in ("start_s", "start_sample") if r.get(k) not in (None, "")]
        if "clip" not in r or len(has) != 1:
            raise EmgError(f"{path}: record {i} needs a clip and exactly one of start_s / start_sample")
        try:
            start = float(r[has[0]])
        except (TypeError, ValueError):
            raise EmgError(f"{path}: record {i}: {has[0]} is not a number ({r[has[0]]!r})") from None
        trial = r.get("trial")
        table[str(r["clip"])] = {has[0]: start, "trial": None if trial in (None, "") else str(trial)}
    if not table:
        raise EmgError(f"{path}: no trials")
    return table


def _names(ds) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in ds[()]]


def read_rollout(path: str | Path, mapping: dict[str, str | None]) -> dict:
    """The mapped actuators' activations (S, T, M; NaN where untracked), step times and reference wrist per clip."""
    path = Path(path)
    f = open_hdf5(path, EmgError, "rollout dataset")
    with f:
        if f.attrs.get("format", "mimic-rollouts") != "mimic-rollouts" or "clips" not in f:
            raise EmgError(f"{path}: not a rollout dataset (see docs/rollout-format.md; write one with mimic rollout)")
        names = _names(f["actuator_names"])
        unmapped = [c for c, a in mapping.items() if a is None]
        if unmapped:
            raise EmgError(f"muscle map: EMG channels {unmapped} map to no actuator; actuators: {', '.join(names)}")
        missing = [a for a in mapping.values() if a not in names]
        if missing:
            raise EmgError(f"muscle map names actuators {missing} not in {path}; actuators: {', '.join(names)}")
        cols = [names.index(a) for a in mapping.values()]
        ees = _names(f["end_effectors"]) if "end_effectors" in f else []
        wrist = next((i for i, n in enumerate(ees) if "wrist" in n.lower()), 0 if ees else None)
        clips = {}
        for name, g in f["clips"].items():
            act = g["activation"][()][..., cols].astype(float)
            tracked = g["tracked"][()].astype(bool)
            act[~tracked] = np.nan
            ref = g["reference_ee_pos"][()][:, wrist] if wrist is not None and "reference_ee_pos" in g else None
            clips[name] = {"time_s": g["time_s"][()].astype(float), "activation": act, "wrist": ref}
        return {"dt": float(f.attrs["control_dt_s"]), "clips": clips, "wrist": ees[wrist] if ees else None}
