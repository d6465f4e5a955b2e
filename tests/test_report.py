"""``mimic report``: a self-contained HTML page that a real headless Chromium renders without errors."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import warnings

import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.cli.report import add_parser
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import MimicError, RunDirError
from mimic_mjx.presentation.report import SECTIONS, build_report
from mimic_mjx.training.trainer import train

BROWSER_HINT = (
    "the browser test needs Chromium and its WebDriver: apt-get install -y chromium chromium-driver "
    "and .venv/bin/pip install selenium"
)


def _write_video(path, codec="libx264", frames=10):
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    extra = {"pixelformat": "yuv420p"} if codec == "libx264" else {}
    with warnings.catch_warnings():
        # JAX warns at every fork; imageio starts ffmpeg with fork + exec, which is safe.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        with imageio.get_writer(path, format="FFMPEG", fps=10, codec=codec, macro_block_size=8, **extra) as w:
            for i in range(frames):
                frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
                frame[:, :, i % 3] = 255  # coloured noise, a different colour each frame
                w.append_data(frame)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny trained and evaluated run, its analysis and experiments, a video and the report of them all."""
    from mimic_mjx.analysis.analyze import analyze
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.analysis.experiment import TABLE_COLUMNS, plot_conditions
    from mimic_mjx.analysis.rollout import roll_out

    root = tmp_path_factory.mktemp("report")
    clips = make_reaching_clips(2, seed=3, num_frames=30)
    train(config_lib.from_dict(tiny_config_dict()), root / "run", clips, log=lambda m: None)
    summary = evaluate(root / "run", clips, root / "run" / "eval")
    roll_out(root / "run", clips, root / "data.h5")
    analyze(root / "data.h5", root / "analysis")
    # The experiments' files as `mimic experiment` writes them (its figures, not its rollouts: fast).
    rows = [{c: 0.5 for c in TABLE_COLUMNS} | {"condition": n, "rollouts": f"{n}.h5"} for n in ("baseline", "weak")]
    (root / "experiments").mkdir()
    x = {"run_dir": str(root / "run"), "perturbations": "p.yaml", "backend": "native", "seeds": 1, "clips": []}
    (root / "experiments" / "experiments.json").write_text(json.dumps(x | {"conditions": rows}))
    plot_conditions(rows, root / "experiments" / "experiments.png")
    _write_video(root / "noise.mp4")
    out = root / "report.html"
    result = build_report(
        root / "run",
        out,
        analysis_dir=root / "analysis",
        experiments_dir=root / "experiments",
        video=root / "noise.mp4",
    )
    return root, clips, summary, out, result


def test_report_holds_every_section_and_the_evaluation(made):
    root, clips, summary, out, result = made
    assert result == {"out": str(out), "sections": dict.fromkeys(SECTIONS, True)}
    text = out.read_text()
    assert re.findall(r'<section id="(\w+)">', text) == list(SECTIONS)
    assert 'class="missing"' not in text
    for clip in clips:
        assert f"<td>{clip.name}</td>" in text
    assert f"mean over {len(clips)} clips" in text
    assert f"{summary['mean_joint_rmse_deg']:.3g}" in text
    for body in summary["body_error_mm_per_body"]:
        assert f"<td>{body}</td>" in text
    for name in ("mimic-mjx", "jax", "mujoco", "flax", "latest checkpoint (update)", "ppo.num_envs"):
        assert f"<td>{name}</td>" in text
    # Training curves, error histograms and box plots, analysis and experiment plots: all inlined PNGs.
    assert text.count('<img src="data:image/png;base64,') >= 3 + 2 + 1 + 1
    sources = re.findall(r'<source src="data:(video/\w+);base64,[A-Za-z0-9+/=]+" type="([^"]+)">', text)
    assert [s[0] for s in sources] == ["video/mp4", "video/webm"]


def test_report_is_self_contained(made):
    text = made[3].read_text()
    assert "://" not in text  # no http://, https:// or file:// anywhere
    for tag in ("<script", "<link", "<iframe", "@import", "url("):
        assert tag not in text
    attrs = re.findall(r'\b(?:src|href|poster)="([^"]*)"', text)
    assert attrs and all(a.startswith(("data:", "#")) for a in attrs), [a[:40] for a in attrs]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(f"Chromium or chromedriver not installed; {BROWSER_HINT}")
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium not installed; {BROWSER_HINT}")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--autoplay-policy=no-user-gesture-required")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


PLAY_VIDEO = """
const done = arguments[arguments.length - 1];
const page = document.querySelector('video');
const play = (v, what) => new Promise(resolve => {
    const state = (ok, why) => resolve({what: what, ok: ok, why: why, ready: v.readyState,
        error: v.error && v.error.code, src: v.currentSrc.slice(0, 20), width: v.videoWidth});
    setTimeout(() => state(false, 'timeout'), 20000);
    const go = () => v.play().then(() => state(true, 'playing'), e => state(false, String(e)));
    if (v.readyState >= 2) { go(); } else { v.addEventListener('loadeddata', go); v.load(); }
});
// The page's <video>, then each of its sources on its own (the fallbacks must play too).
const alone = [...page.querySelectorAll('source')].map(s => {
    const v = document.createElement('video'); v.muted = true; v.src = s.src; return play(v, s.type); });
Promise.all([play(page, 'page'), ...alone]).then(done);
"""


def test_report_renders_in_headless_chromium(browser, made):
    from selenium.webdriver.common.by import By

    out = made[3]
    browser.get(out.as_uri())
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const wait = () => [...document.images].every(i => i.complete) ? done() : setTimeout(wait, 50); wait();"
    )
    for sid, title in SECTIONS.items():
        assert browser.find_element(By.CSS_SELECTOR, f"section#{sid} > h2").text == title
    images = browser.execute_script(
        "return [...document.images].map(i => ({src: i.src.slice(0, 22), natural: i.naturalWidth,"
        " w: i.getBoundingClientRect().width, h: i.getBoundingClientRect().height}));"
    )
    assert len(images) >= 7
    for img in images:
        assert img["src"] == "data:image/png;base64,", img
        assert img["natural"] > 0 and img["w"] > 0 and img["h"] > 0, img
    played = browser.execute_async_script(PLAY_VIDEO)
    assert [p["what"] for p in played] == ["page", 'video/mp4; codecs="avc1.640028"', 'video/webm; codecs="vp9"']
    for video in played:
        assert video["ok"] and video["error"] is None and video["ready"] >= 2 and video["width"] == 64, video
    # Only data: URIs were loaded: nothing from a server, the network or other files.
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(n.startswith("data:") for n in names), names
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_report_of_a_run_without_evaluation_names_the_commands(made, tmp_path, capsys):
    root = made[0]
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(root / "run" / name, run / name)
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["report", str(run), "--out", str(tmp_path / "r.html")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "open it in a browser" in printed and str(tmp_path / "r.html") in printed
    text = (tmp_path / "r.html").read_text()
    assert re.findall(r'<section id="(\w+)">', text) == list(SECTIONS)
    tracking = text.split('<section id="tracking">')[1].split("</section>")[0]
    assert f"mimic evaluate {run} --clips" in tracking
    assert "mimic evaluate" in text.split('<section id="errors">')[1].split("</section>")[0]
    assert "mimic analyze" in text and "mimic experiment" in text and "--video" in text
    # A run that never logged still gets its provenance, and the training section says how to log.
    (run / "metrics.jsonl").unlink()
    sections = build_report(run, tmp_path / "r2.html")["sections"]
    assert sections == {s: s == "provenance" for s in SECTIONS}
    assert "mimic train --run-dir" in (tmp_path / "r2.html").read_text()


def test_bad_input_is_one_line_errors(made, tmp_path):
    root = made[0]
    out = tmp_path / "r.html"
    cases = [
        ((tmp_path / "nope",), {}, RunDirError, "no such run folder"),
        ((tmp_path,), {}, RunDirError, "not a mimic-mjx run"),
        ((root / "run",), {"eval_dir": tmp_path}, MimicError, "mimic evaluate"),
        ((root / "run",), {"analysis_dir": tmp_path}, MimicError, "mimic analyze"),
        ((root / "run",), {"experiments_dir": root / "analysis"}, MimicError, "mimic experiment"),
        ((root / "run",), {"video": tmp_path / "missing.mp4"}, MimicError, "no such video"),
    ]
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    cases.append(((root / "run",), {"video": tmp_path / "junk.mp4"}, MimicError, "not a readable video"))
    for args, kwargs, error, words in cases:
        with pytest.raises(error, match=words) as info:
            build_report(*args, out, **kwargs)
        assert "\n" not in str(info.value)
    assert not out.exists()  # nothing half-written


def _flip_bytes(step_dir):
    """Damage a checkpoint step the way rot or a cut-short copy does: bytes of its largest file change."""
    target = max((p for p in step_dir.rglob("*") if p.is_file() and not p.name.startswith("MANIFEST")), key=_size)
    data = bytearray(target.read_bytes())
    for i in (len(data) // 3, len(data) // 2, len(data) - 5):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))


def _size(path):
    return path.stat().st_size


def test_report_verifies_the_checkpoint_it_names(made, tmp_path):
    root = made[0]
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) >= 2
    text = lambda p: p.read_text().split('<section id="provenance">')[1].split("</section>")[0]
    build_report(run, tmp_path / "good.html")
    assert f"<td>{steps[-1]} (verified: checksums match, parameters finite)</td>" in text(tmp_path / "good.html")
    assert 'class="damaged"' not in (tmp_path / "good.html").read_text()
    _flip_bytes(run / "checkpoints" / str(steps[-1]))
    result = build_report(run, tmp_path / "damaged.html")
    assert result["sections"]["provenance"]
    page = text(tmp_path / "damaged.html")
    warning = page.split('<p class="damaged">')[1].split("</p>")[0]
    assert f"newest checkpoint of this run, update {steps[-1]}" in warning and "fails verification" in warning
    assert "does not match its checksum" in warning
    assert f"the newest that verifies is update {steps[-2]}" in warning
    assert f"<td>{steps[-1]}: DAMAGED (" in page
    # None verifies: the report says so and lists them, it does not fail.
    for s in steps[:-1]:
        _flip_bytes(run / "checkpoints" / str(s))
    build_report(run, tmp_path / "none.html")
    warning = text(tmp_path / "none.html").split('<p class="damaged">')[1].split("</p>")[0]
    assert f"no checkpoint of this run verifies (damaged: updates {', '.join(map(str, reversed(steps)))})" in warning
