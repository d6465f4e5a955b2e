"""The report's results section for a transfer run: held-out task instances (``mimic evaluate`` of a task run)."""

from __future__ import annotations

import html
from pathlib import Path


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def task_results(summary: dict, eval_dir: Path) -> str:
    """Summary figures, the latent comparison and one row per held-out instance."""
    lat = summary.get("latent", {})
    rows = [
        ("task", summary.get("task")),
        ("decoder", summary.get("decoder")),
        ("decoder from", summary.get("source_run")),
        ("checkpoint update", summary.get("update")),
        ("held-out instances", summary.get("instances")),
        ("success rate", summary.get("success_rate")),
        ("reached (ever within the radius)", summary.get("reach_rate")),
        ("median time to reach (s)", summary.get("median_time_to_reach_s")),
        ("mean final distance (mm)", summary.get("mean_final_distance_mm")),
        ("muscle energy per episode (mJ)", summary.get("mean_energy_mj")),
        ("jerk, RMS (m/s^3)", summary.get("mean_jerk_m_s3")),
        ("latent: RMS z against imitation", lat.get("rms_z")),
        ("latent: share within 3 SD of imitation", lat.get("fraction_within_3sd")),
        ("latent: spread ratio task / imitation", lat.get("std_ratio_mean")),
    ]
    kv = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows)
    cols = ("instance", "success", "reached", "time_to_reach_s", "final_distance_mm", "energy_mj", "jerk_m_s3")
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(d.get(c))}</td>" for c in cols) + "</tr>"
        for d in summary.get("instances_detail", [])
    )
    return (
        f"<p>Deterministic rollouts on held-out task instances (<code>{html.escape(str(eval_dir / 'summary.json'))}"
        f"</code>).</p><table class='kv'>{kv}</table><details><summary>per instance</summary>"
        f"<table><tr>{head}</tr>{body}</table></details>"
    )
