"""``mimic demo``: the whole pipeline on built-in generated behaviour, no data needed.

Makes reference clips with a body's motion generator (the forelimb's smooth
reaches by default; ``--body worm``: crawling undulations on agar;
``--body stick_insect``: walking), trains on them for a few minutes, evaluates
on clips generated with parameters the training never saw (other reach
targets; other wave frequencies and wavelengths; other speeds and step
frequencies), and writes a summary, plots, a video and a report to the output
folder. It uses the body's default config (the body registry's), renamed
``demo``, so the demo trains exactly what ``mimic train`` would for that body.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mimic_mjx import config as config_lib
from mimic_mjx.errors import RunDirError

#: Bodies with a demo -> what one clip of its behaviour is called (file names).
DEMO_BODIES = {"mouse_forelimb": "reach", "worm": "crawl", "stick_insect": "walk"}


def demo_clips(body: str) -> tuple[list, list]:
    """Training and held-out clips of a demo body, from its generator (held-out: unseen parameters)."""
    if body == "mouse_forelimb":
        from mimic_mjx.data.synthetic import make_reaching_clips

        return make_reaching_clips(48, seed=1), make_reaching_clips(8, seed=2)
    if body == "worm":
        from mimic_mjx.data.undulation import HELDOUT, make_worm_clips

        heldout = [c for i, p in enumerate(HELDOUT["crawl"]) for c in make_worm_clips("crawl", 2, seed=100 + i, **p)]
        return make_worm_clips("crawl", 12, seed=1), heldout
    if body == "stick_insect":
        from mimic_mjx.data.walking import HELDOUT, make_walking_clips

        heldout = [c for i, p in enumerate(HELDOUT) for c in make_walking_clips(1, seed=100 + i, **p)]
        return make_walking_clips(12, seed=1), heldout
    raise _no_demo(body)


def _no_demo(body: str):
    from mimic_mjx.errors import MimicError

    return MimicError(f"no demo for body '{body}'; demos exist for {', '.join(DEMO_BODIES)}")


def run_demo(out: Path, minutes: float = 5.0, force: bool = False, log=print, body: str = "mouse_forelimb") -> dict:
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.clips import write_clips
    from mimic_mjx.files import write_text
    from mimic_mjx.presentation.plots import plot_clip, plot_training_curve
    from mimic_mjx.training.trainer import train

    out = Path(out)
    if body not in DEMO_BODIES:  # before touching the output folder
        raise _no_demo(body)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunDirError(f"{out} already exists and is not empty; pass --force to replace it or --out elsewhere")
        shutil.rmtree(out)
    cfg = get_body(body).default_config().replace(name="demo")
    cfg = config_lib.apply_overrides(cfg, [f"train.max_minutes={minutes}"])
    train_clips, test_clips = demo_clips(body)
    what = DEMO_BODIES[body]
    write_clips(out / "clips" / f"train_{what}s.h5", train_clips)
    write_clips(out / "clips" / f"heldout_{what}s.h5", test_clips)
    log(f"made {len(train_clips)} training and {len(test_clips)} held-out {what} clips of {body} in {out / 'clips'}")
    summary = train(cfg, out / "run", train_clips, log=log)
    if summary.get("stopped_by"):
        raise KeyboardInterrupt  # stopped by a signal: the checkpoint is saved, the demo ends here
    ev = evaluate(out / "run", test_clips, out / "eval")
    plots = [plot_training_curve(out / "run" / "metrics.jsonl", out / "training_curve.png")]
    for c in ev["clips"][:3]:
        plots += plot_clip(out / "eval" / "rollouts.h5", c["clip"], out)
    log(format_summary(ev))
    result = {
        "body": body,
        "train_wall_s": round(summary["wall_s"], 1),
        "train_steps_per_s": round(summary["steps_per_s"], 1),
        "env_steps": summary["env_steps"],
        "heldout_joint_rmse_deg": ev["mean_joint_rmse_deg"],
        # The end effectors' error: the forelimb's wrist, the worm's head and tail, the insect's tarsi.
        "heldout_wrist_error_mm": ev["mean_ee_error_mm"],
        "heldout_body_error_mm": ev["mean_body_error_mm"],
        "heldout_fraction_tracked": ev["mean_fraction_tracked"],
        # Markers against the (synthetic) recorded keypoints, as the forelimb benchmark reports them.
        **{
            f"heldout_{k.lower()}_kp_error_mm": v
            for k, v in ev.get("keypoint_error_mm_per_keypoint", {}).items()
            if k in ("Wrist", "Elbow")
        },
        "plots": [str(p) for p in plots],
        "run_dir": str(out / "run"),
    }
    result.update(_share(out, test_clips, log, what))
    write_text(out / "summary.json", json.dumps(result, indent=2))
    log(f"demo done: summary in {out / 'summary.json'}, plots {', '.join(p.name for p in plots)}")
    log(f"open the report in a browser: {out / 'report.html'}")
    return result


def _share(out: Path, clips, log, what: str) -> dict:
    """The analysis stage on the held-out reaches, a video where OpenGL exists, and the report."""
    from mimic_mjx.analysis.analyze import analyze
    from mimic_mjx.errors import MimicError
    from mimic_mjx.presentation.report import build_report
    from mimic_mjx.presentation.video import render_rollout

    # Evaluation's rollouts.h5 is a rollout dataset of these reaches: analysed as it is, not rolled out again.
    analysis = analyze(out / "eval" / "rollouts.h5", out / "analysis")
    latent = analysis.get("representations", {}).get("latent_mean", {})
    video = out / f"heldout_{what}.mp4"
    try:
        render_rollout(out / "run", clips, clips[0].name, video, width=480, height=360, log=lambda m: None)
    except MimicError as exc:  # no OpenGL here: the report goes without the video
        log(f"no video: {exc}")
        video = None
    build_report(out / "run", out / "report.html", eval_dir=out / "eval", analysis_dir=out / "analysis", video=video)
    return {
        "latent_components_95": latent.get("components_95"),
        "report": str(out / "report.html"),
        "video": str(video) if video else None,
    }
