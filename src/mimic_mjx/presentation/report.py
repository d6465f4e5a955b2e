"""``mimic report``: one self-contained HTML page of a run: provenance, training curves, tracking,
error distributions, and, where given, analysis, video and virtual experiments.

Every asset is inlined (images and videos as base64 data URIs, CSS in the page; no scripts, fonts or
links), so the file opens from disk with no server and no internet. A section whose input is missing
names the command that makes it. Figures and media are made in ``presentation/report_figures.py``.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import platform
from pathlib import Path

from mimic_mjx.errors import MimicError, RunDirError
from mimic_mjx.files import read_jsonl, read_text, require_regular_file, write_text
from mimic_mjx.presentation import report_figures as F
from mimic_mjx.presentation.task_report import task_results
from mimic_mjx.training.rundir import package_version

SECTIONS = {
    "provenance": "Provenance",
    "training": "Training curves",
    "tracking": "Tracking",
    "errors": "Error distributions",
    "analysis": "Analysis",
    "video": "Video",
    "experiments": "Virtual experiments",
}
MAX_CLIP_PLOTS = 6
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:1em 2em;color:#222;line-height:1.4}
h1{margin-bottom:0.2em} h2{border-bottom:1px solid #ccc;padding-bottom:0.2em;margin-top:1.6em}
nav a{margin-right:1em} table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}
th,td{border:1px solid #ddd;padding:0.25em 0.6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} tr.mean td{font-weight:bold;background:#fafafa}
figure{margin:0.8em 0} figcaption{font-size:0.85em;color:#555} img{max-width:100%;height:auto}
video{max-width:100%;background:#000} .missing{color:#8a5300;background:#fff6e5;padding:0.6em;border-radius:4px}
.damaged{color:#8b0000;background:#ffeaea;padding:0.6em;border-radius:4px;font-weight:bold}
table.kv td{text-align:left} code{background:#f3f3f3;padding:0 0.2em} details pre{font-size:0.8em}
"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _esc(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"


def _table(header: list[str], rows: list[list], mean_last: bool = False, cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="mean"' if mean_last and i == len(rows) - 1 else ""
        cells = "".join(f"<td>{c if isinstance(c, _Raw) else _num(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>{head}<tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Table cell text that is already HTML."""


def _figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(read_text(path, MimicError, what))  # checked first: not a pipe, UTF-8 text
    except json.JSONDecodeError as exc:
        raise MimicError(f"{path}: unreadable {what} ({exc})") from None


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """The records of a metrics.jsonl file, and how many damaged lines (half-written, bad bytes) were skipped."""
    return read_jsonl(path, MimicError, "metrics log")


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _wall_s(records: list[dict]) -> float | None:
    """Training wall time over every session: ``train/wall_s`` restarts when a run is resumed."""
    total, prev = 0.0, None
    for w in (r.get("train/wall_s") for r in records):
        if not isinstance(w, (int, float)):
            continue
        if prev is not None and w < prev:
            total += prev
        prev = w
    return None if prev is None else total + prev


def _checkpoint(run: Path) -> tuple[str, str]:
    """The provenance row of the newest checkpoint, verified as restoring it is, and a warning when it fails."""
    # Imported here: orbax and JAX load only when a report is written, not when the CLI starts.
    from mimic_mjx.training.checkpoint import verify_checkpoints

    good, damaged = verify_checkpoints(run / "checkpoints")
    if not damaged:
        return ("none" if good is None else f"{good} (verified: checksums match, parameters finite)"), ""
    newest, problem = damaged[0]
    rest = (
        f"the newest that verifies is update {good}, the one evaluate, render and train --resume use"
        if good is not None
        else f"no checkpoint of this run verifies (damaged: updates {', '.join(str(s) for s, _ in damaged)})"
    )
    warning = (
        f'<p class="damaged">The newest checkpoint of this run, update {newest} '
        f"(<code>{_esc(run / 'checkpoints' / str(newest))}</code>), fails verification: {_esc(problem)}; {rest}.</p>"
    )
    return f"{newest}: DAMAGED ({problem}); " + (f"newest verified: {good}" if good is not None else rest), warning


def _provenance(run: Path, config: dict, records: list[dict]) -> str:
    from mimic_mjx.version import __version__

    last = records[-1] if records else {}
    wall = _wall_s(records)
    checkpoint, warning = _checkpoint(run)
    items = [
        ("run folder", str(run.resolve())),
        ("experiment", config.get("name", "–")),
        ("body", config.get("env", {}).get("body", "–") if isinstance(config.get("env"), dict) else "–"),
        ("mimic-mjx", __version__),
        *((name, package_version(name)) for name in ("jax", "jaxlib", "mujoco", "mujoco-mjx", "flax")),
        ("report written", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("run last logged", _mtime(run / "metrics.jsonl")),
        *_training_machines(run),
        ("report machine", f"{platform.platform()} ({platform.machine()}), {os.cpu_count()} CPUs"),
        ("python", platform.python_version()),
        ("updates", last.get("update", "–")),
        ("environment steps", last.get("env_steps", "–")),
        ("training wall time", "–" if wall is None else f"{wall / 60:.1f} min ({wall:.0f} s)"),
        ("latest checkpoint (update)", checkpoint),
    ]
    table = _table(["", ""], [[k, v if isinstance(v, (int, float)) else _Raw(_esc(v))] for k, v in items], cls="kv")
    cfg_rows = [[k, _Raw(f"<code>{_esc(json.dumps(v))}</code>")] for k, v in _flatten(config)]
    return (
        warning
        + table
        + "<details open><summary>run configuration (config.json)</summary>"
        + _table(["key", "value"], cfg_rows, cls="kv")
        + "</details>"
    )


def _training_machines(run: Path) -> list[tuple[str, str]]:
    """One row per training session from the run's provenance.jsonl (runs of earlier versions have none)."""
    path = run / "provenance.jsonl"
    if not path.is_file():
        return [("trained on", "not recorded (a run of an earlier mimic-mjx)")]
    entries, damaged = read_jsonl(path, MimicError, "provenance log")
    rows = [("trained on", f"{damaged} unreadable provenance line(s)")] if damaged else []
    for e in entries:
        try:
            v = e.get("versions", {})
            rows.append(
                (
                    f"trained ({e['mode']} from update {e['start_update']})",
                    f"{e['started']} on {e['host']}: {e['platform']}, {e['cpu_count']} CPUs, {e['devices']}; "
                    f"jax {v.get('jax', '?')}, mujoco {v.get('mujoco', '?')}",
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            rows.append(("trained on", "unreadable provenance line"))
    return rows


def _mtime(path: Path) -> str:
    if not path.exists():
        return "–"
    return datetime.datetime.fromtimestamp(path.stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _training(records: list[dict], run: Path, damaged: int = 0) -> str | None:
    figs = F.training_figures(records)
    log = run / "metrics.jsonl"
    # Said, not hidden: curves with gaps should not pass for a whole record (not "missing": the rest is shown).
    note = f'<p class="damaged">{damaged} damaged line(s) of {_esc(log)} skipped (not UTF-8 JSON)</p>' * bool(damaged)
    if not figs:
        return note or None
    return note + "".join(_figure(uri, f"{title} against environment steps ({log})") for title, uri in figs)


def _tracking(summary: dict, eval_dir: Path) -> str:
    clips = summary.get("clips", [])
    kp = "keypoint_error_mm" in summary or "mean_keypoint_error_mm" in summary
    header = ["clip", "frames", "joint RMSE (deg)", "end-effector (mm)", "bodies (mm)", "root (mm)"]
    header += ["keypoints (mm)"] * kp + ["tracked (%)"]

    def row(label, frames, c, prefix=""):
        vals = [c.get(f"{prefix}{k}") for k in ("joint_rmse_deg", "ee_error_mm", "body_error_mm", "root_error_mm")]
        vals += [c.get(f"{prefix}keypoint_error_mm")] * kp
        tracked = c.get(f"{prefix}fraction_tracked")
        return [_Raw(_esc(label)), frames, *vals, None if tracked is None else 100 * tracked]

    rows = [row(c.get("clip", "?"), c.get("frames"), c) for c in clips]
    rows.append(row(f"mean over {summary.get('num_clips', len(clips))} clips", None, summary, "mean_"))
    parts = [
        f"<p>Deterministic rollouts of the checkpoint of update {_num(summary.get('checkpoint_update'))} "
        f"(<code>{_esc(eval_dir / 'summary.json')}</code>); errors over each clip's tracked part.</p>",
        _table(header, rows, mean_last=True),
    ]
    per_body = summary.get("body_error_mm_per_body") or {}
    if per_body:
        names = [c.get("clip", "?") for c in clips]
        brows = [
            [_Raw(_esc(b)), m, *[c.get("body_error_mm_per_body", {}).get(b) for c in clips]]
            for b, m in per_body.items()
        ]
        parts += ["<h3>Error per tracked body (mm, relative to the root)</h3>", _table(["body", "mean", *names], brows)]
    per_kp = summary.get("keypoint_error_mm_per_keypoint") or {}
    if per_kp:
        parts += [
            "<h3>Error per keypoint (mm)</h3>",
            _table(["keypoint", "mean"], [[_Raw(_esc(k)), v] for k, v in per_kp.items()]),
        ]
    plots = sorted(eval_dir.glob("*_joints.png")) + sorted(eval_dir.glob("*_muscles.png"))
    parts += [_figure(F.image_uri(p), p.name) for p in plots[:MAX_CLIP_PLOTS]]
    return "".join(parts)


def _analysis(adir: Path) -> str:
    a = _read_json(adir / "analysis.json", "analysis (analysis.json of `mimic analyze`)")
    reps = a.get("representations", {})
    rows = []
    for key, r in reps.items():
        if "skipped" in r:
            rows.append([_Raw(_esc(key)), None, None, None, _Raw(_esc("skipped: " + r["skipped"]))])
        else:
            first = (r.get("explained_variance_ratio") or [None])[0]
            rows.append([_Raw(_esc(key)), r.get("dims"), r.get("components_90"), r.get("components_95"), first])
    parts = [
        f"<p>{_num(a.get('n_tracked_steps'))} tracked steps of {len(a.get('clips', []))} clip(s), body "
        f"{_esc(a.get('body', '?'))}, {'stochastic' if a.get('stochastic') else 'deterministic'} rollouts.</p>",
        _table(["representation", "dims", "PCs for 90 %", "PCs for 95 %", "variance in PC 1"], rows),
    ]
    syn = a.get("synergies")
    if syn:
        k = syn.get("k")
        vaf = syn.get("vaf") or []
        parts.append(
            f"<p>Muscle synergies (NMF, {len(syn.get('muscles', []))} muscles): "
            f"{_num(syn.get('synergies_90'))} synergies reach VAF {100 * syn.get('threshold', 0.9):.0f} %; "
            f"k = {_num(k)} explains {_num(100 * vaf[k - 1] if k and len(vaf) >= k else None)} %.</p>"
        )
    names = a.get("plots") or [p.name for p in sorted(adir.glob("*.png"))]
    parts += [_figure(F.image_uri(adir / n), n) for n in names if (adir / n).is_file()]
    return "".join(parts)


def _experiments(xdir: Path) -> str:
    x = _read_json(xdir / "experiments.json", "virtual experiments (experiments.json of `mimic experiment`)")
    rows = x.get("conditions", [])
    cols = [k for k in (rows[0] if rows else {}) if k not in ("condition", "rollouts")]
    parts = [
        f"<p>{len(rows)} condition(s) on {len(x.get('clips', []))} clip(s), {_num(x.get('seeds'))} seed(s), "
        f"backend {_esc(x.get('backend', '?'))}; perturbations from <code>{_esc(x.get('perturbations', '?'))}</code>. "
        "Changes are mean absolute differences from the baseline.</p>",
        _table(["condition", *cols], [[_Raw(_esc(r.get("condition"))), *[r.get(c) for c in cols]] for r in rows]),
    ]
    if (xdir / "experiments.png").is_file():
        parts.append(_figure(F.image_uri(xdir / "experiments.png"), "experiments.png"))
    return "".join(parts)


def _video(videos: list[Path]) -> str:
    parts = []
    for v in videos:
        sources, note = F.video_sources(v)
        srcs = "".join(f'<source src="{uri}" type="{_esc(mime)}">' for mime, uri in sources)
        caption = v.name + (f" ({note})" if note else "")
        parts.append(
            f'<figure><video controls loop muted playsinline preload="auto">{srcs}'
            f"Your browser cannot play this video.</video><figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return "".join(parts)


def _dir(path, what: str, needed: str) -> Path:
    p = Path(path)
    if not (p / needed).is_file():
        raise MimicError(f"{p} holds no {needed}; pass the folder written by `{what}`")
    return p


def build_report(run_dir, out, *, eval_dir=None, analysis_dir=None, experiments_dir=None, video=None) -> dict:
    """Write the HTML report of ``run_dir`` to ``out``.

    ``eval_dir`` defaults to ``run_dir/eval`` where it exists; every ``*.mp4`` in it is embedded beside
    ``video``. Returns ``{"out": path, "sections": {section id: filled?}}``; a section not filled says in
    the page which command makes its input. Raises MimicError on a missing run or input folder.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise RunDirError(f"{run}: no such run folder; pass the --run-dir of `mimic train`")
    if not (run / "config.json").is_file():
        raise RunDirError(f"{run} is not a mimic-mjx run (no config.json); pass the folder `mimic train` wrote")
    config = _read_json(run / "config.json", "run configuration")
    if eval_dir is None and (run / "eval" / "summary.json").is_file():
        eval_dir = run / "eval"
    edir = _dir(eval_dir, "mimic evaluate", "summary.json") if eval_dir is not None else None
    adir = _dir(analysis_dir, "mimic analyze", "analysis.json") if analysis_dir is not None else None
    xdir = _dir(experiments_dir, "mimic experiment", "experiments.json") if experiments_dir is not None else None
    videos = ([Path(video)] if video else []) + (sorted(edir.glob("*.mp4")) if edir else [])
    for v in (v for v in videos if v.exists()):  # a missing one: video_sources says how to make it
        require_regular_file(v, MimicError, "video")  # a named pipe would block forever
    videos = list({v.resolve(): v for v in videos}.values())  # --video may be one of the folder's
    records, damaged = read_metrics(run / "metrics.jsonl")
    evaluate_cmd = f"<code>mimic evaluate {_esc(run)} --clips CLIPS.h5</code>"

    body = {"provenance": _provenance(run, config, records)}
    body["training"] = _training(records, run, damaged) or _missing(
        f"no training metrics in {_esc(run / 'metrics.jsonl')}: run <code>mimic train --run-dir "
        f"{_esc(run)} ...</code> (or <code>--resume</code>) to log training curves"
    )
    if edir is not None and "task" in (summary := _read_json(edir / "summary.json", "evaluation summary")):
        body["tracking"] = task_results(summary, edir)  # a transfer run: task instances, not clips
    elif edir is not None:
        body["tracking"] = _tracking(summary, edir)
        figs = F.error_figures(F.read_errors(edir / "rollouts.h5")) if (edir / "rollouts.h5").is_file() else []
        body["errors"] = "".join(_figure(uri, f"tracking errors: {t}") for t, uri in figs) or None
    body["tracking"] = body.get("tracking") or _missing(
        f"no evaluation: run {evaluate_cmd} to add tracking results (written to {_esc(run / 'eval')}, "
        "which the report reads by default; or pass <code>--eval DIR</code>)"
    )
    if not body.get("errors"):
        body["errors"] = _missing(f"no rollouts.h5: run {evaluate_cmd} to add error distributions")
    body["analysis"] = _analysis(adir) if adir else None
    body["analysis"] = body["analysis"] or _missing(
        f"no analysis: run <code>mimic rollout {_esc(run)} --clips CLIPS.h5 --out data.h5</code> and "
        "<code>mimic analyze data.h5 --out ANALYSIS</code>, then pass <code>--analysis ANALYSIS</code>"
    )
    body["video"] = _video(videos) or _missing(
        "no video: pass <code>--video FILE.mp4</code> (e.g. made with <code>mimic render</code>), "
        "or put an MP4 in the evaluation folder"
    )
    body["experiments"] = (_experiments(xdir) if xdir else None) or _missing(
        f"no virtual experiments: run <code>mimic experiment {_esc(run)} --clips CLIPS.h5 --perturb PERTURB.yaml "
        "--out EXPERIMENTS</code>, then pass <code>--experiments EXPERIMENTS</code>"
    )
    filled = {sid: 'class="missing"' not in body[sid] for sid in SECTIONS}
    nav = "".join(f'<a href="#{sid}">{_esc(title)}</a>' for sid, title in SECTIONS.items())
    sections = "".join(
        f'<section id="{sid}"><h2>{_esc(title)}</h2>{body[sid]}</section>' for sid, title in SECTIONS.items()
    )
    title = f"mimic-mjx report: {config.get('name', run.name)}"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p>{_esc(run.resolve())}</p><nav>{nav}</nav>{sections}</body></html>\n"
    )
    out = Path(out)
    write_text(out, page)
    return {"out": str(out), "sections": filled}
