"""Hostile output locations and rendering set-ups: a one-line error before any long work, never a traceback.

Every command that writes checks its output location first (``cli/outputs.py``
and ``files.require_writable_*``): an ``--out`` that is a file where a folder
is wanted (or the reverse), a path under a regular file, or a folder that
cannot be written ends the command in seconds, naming the option. Rendering
without a usable OpenGL (an unknown MUJOCO_GL, a library that is not
installed, variables that contradict each other) says what to install and
which variable selects it; the rest of the package still imports.
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimic_mjx import gl
from mimic_mjx.cli.main import build_parser, main
from mimic_mjx.cli.outputs import OUTPUT_DESTS, OUTPUTS
from mimic_mjx.errors import MimicError, OutputError
from mimic_mjx.files import require_writable_dir, require_writable_file

# Each command with inputs that do not exist: were the output not checked first, the error would name them.
COMMANDS = {
    "train": ["train", "--clips", "{missing}", "--run-dir", "{out}"],
    "transfer": ["transfer", "{run}", "--task", "reach_target", "--run-dir", "{out}"],
    "evaluate": ["evaluate", "{run}", "--clips", "{missing}", "--out", "{out}"],
    "demo": ["demo", "--out", "{out}"],
    "register": ["register", "--body", "mouse_forelimb", "--keypoints", "{missing}", "--out", "{out}"],
    "register --render": ["register", "--body", "mouse_forelimb", "--keypoints", "{missing}", "--out", "{ok}"]
    + ["--render", "{out}"],
    "rollout": ["rollout", "{run}", "--clips", "{missing}", "--out", "{out}"],
    "experiment": ["experiment", "{run}", "--clips", "{missing}", "--perturb", "{missing}", "--out", "{out}"],
    "emg": ["emg", "{missing}", "--emg", "{missing}", "--map", "{missing}", "--out", "{out}"],
    "analyze": ["analyze", "{missing}", "--out", "{out}"],
    "render": ["render", "{run}", "--clip", "a", "--clips", "{missing}", "--out", "{out}"],
    "export": ["export", "{run}", "--out", "{out}"],
    "report": ["report", "{run}", "--out", "{out}"],
}


def _kind(case: str) -> tuple[str, str]:
    """(flag, "dir" or "file") of the output a case aims at."""
    argv = COMMANDS[case]
    flag = argv[argv.index("{out}") - 1]
    (entry,) = [e for e in OUTPUTS[argv[0]] if e[1] == flag]
    return flag, entry[2]


def _run(case: str, out: Path, tmp_path: Path, capsys) -> str:
    values = {"missing": str(tmp_path / "missing.h5"), "run": str(tmp_path / "no_run"), "ok": str(tmp_path / "ok.h5")}
    values["out"] = str(out)
    argv = [a.format(**values) for a in COMMANDS[case]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"mimic {argv[0]}: error: "), err
    return err


def test_every_command_that_writes_is_checked():
    """A new command with --out, --run-dir or --render must be added to cli/outputs.OUTPUTS (and here)."""
    found = {}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                dests = {a.dest for a in sub._actions} & set(OUTPUT_DESTS)
                if dests:
                    found[name] = dests
    assert found.keys() == OUTPUTS.keys()
    for name, dests in found.items():
        assert dests == {e[0] for e in OUTPUTS[name]}, name
    assert {argv[0] for argv in COMMANDS.values()} == OUTPUTS.keys()


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_output_of_the_wrong_kind(tmp_path, case, capsys):
    """A folder where a file is wanted, or a file where a folder is (the reported FileExistsError)."""
    flag, kind = _kind(case)
    out = tmp_path / "existing"
    if kind == "dir":
        out.write_text("a file")
    else:
        out.mkdir()
    err = _run(case, out, tmp_path, capsys)
    assert f"{flag} {out} is a " + ("file, not a folder" if kind == "dir" else "folder") in err
    assert "missing.h5" not in err and "no_run" not in err  # checked before any input was read


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_output_under_a_file(tmp_path, case, capsys):
    flag, _ = _kind(case)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "result"
    err = _run(case, out, tmp_path, capsys)
    assert f"{flag} {out}: {tmp_path / 'afile'} is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the simulated case below")
@pytest.mark.parametrize("case", ["evaluate", "experiment", "rollout", "report", "train"])
def test_output_in_a_read_only_folder(tmp_path, case, capsys):
    flag, _ = _kind(case)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        err = _run(case, locked / "out", tmp_path, capsys)
    finally:
        locked.chmod(0o755)
    assert f"{flag} {locked / 'out'}: cannot write in {locked}" in err and "choose a folder you can write to" in err


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
@pytest.mark.parametrize("case", ["evaluate", "experiment", "export"])
def test_output_that_cannot_be_written(tmp_path, case, code, capsys, monkeypatch):
    """What a read-only mount, a folder without permission or a full disk does, simulated (tests may run as root)."""
    import mimic_mjx.files as files

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    flag, _ = _kind(case)
    err = _run(case, tmp_path / "out", tmp_path, capsys)
    assert f"{flag} {tmp_path / 'out'}: cannot write in {tmp_path} ({os.strerror(code)})" in err
    assert ("free space" if code == errno.ENOSPC else "choose a folder you can write to") in err


def test_writable_locations_pass_and_nothing_is_left_behind(tmp_path):
    assert require_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not made
    assert require_writable_dir(tmp_path / "a" / "b", create=True).is_dir()
    (tmp_path / "old.h5").write_text("previous")
    assert require_writable_file(tmp_path / "old.h5") == tmp_path / "old.h5"  # replacing a file is fine
    assert require_writable_file(tmp_path / "new" / "x.mp4") == tmp_path / "new" / "x.mp4"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "old.h5"]
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OutputError, match="not a regular file"):
        require_writable_file(tmp_path / "pipe")


# ---------------------------------------------------------------------------
# OpenGL: chosen before mujoco is imported, reported when a command renders


def _choose(environ: dict, libraries=("OSMesa", "EGL")) -> tuple[str | None, dict]:
    env = dict(environ)
    problem = gl.choose_backend(env, find_library=lambda name: name if name in libraries else None, system="Linux")
    return problem, env


def test_gl_choice_without_a_display():
    assert _choose({}) == (None, {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    assert _choose({}, ("EGL",)) == (None, {"MUJOCO_GL": "egl"})
    assert _choose({"PYOPENGL_PLATFORM": "egl"}) == (None, {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"})
    assert _choose({"DISPLAY": ":0"}) == (None, {"DISPLAY": ":0"})  # a desktop: MuJoCo's GLFW
    problem, env = _choose({}, ())
    assert "libOSMesa or libEGL not found" in problem and env["MUJOCO_GL"] == "disable"


@pytest.mark.parametrize(
    ("environ", "libraries", "says"),
    [
        ({"MUJOCO_GL": "bogus"}, ("OSMesa", "EGL"), "MUJOCO_GL='bogus' is not an OpenGL backend"),
        ({"MUJOCO_GL": "osmesa"}, ("EGL",), "MUJOCO_GL=osmesa but libOSMesa is not installed"),
        ({"MUJOCO_GL": "egl"}, ("OSMesa",), "MUJOCO_GL=egl but libEGL is not installed"),
        ({"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "osmesa"}, ("OSMesa", "EGL"), "they must agree"),
        ({"MUJOCO_GL": "off"}, ("OSMesa", "EGL"), "turns rendering off"),
    ],
)
def test_gl_choice_that_cannot_work_is_disabled_and_explained(environ, libraries, says):
    problem, env = _choose(environ, libraries)
    assert says in problem and env["MUJOCO_GL"] == "disable"  # mujoco then imports (and simulates) without GL


def test_renderer_reports_the_problem(monkeypatch):
    from mimic_mjx.presentation.render import require_renderer

    monkeypatch.setattr(gl, "PROBLEM", "MUJOCO_GL='bogus' is not an OpenGL backend MuJoCo knows")
    with pytest.raises(MimicError, match="cannot render: MUJOCO_GL='bogus'") as exc:
        require_renderer()
    msg = str(exc.value)
    assert "\n" not in msg
    for needed in ("apt-get install libosmesa6", "libegl1", "MUJOCO_GL=osmesa", "MUJOCO_GL=egl", "PYOPENGL_PLATFORM"):
        assert needed in msg


def _cli(env: dict, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")} | env
    code = "import sys; from mimic_mjx.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=full, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MUJOCO_GL": "bogus"}, "MUJOCO_GL='bogus' is not an OpenGL backend"),
        ({"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "egl"}, "they must agree"),
    ],
)
def test_render_commands_without_usable_gl_say_what_to_install(tmp_path, env, says):
    """The reported RuntimeError / AttributeError (glGetError) at import, now a line naming the fix."""
    for argv in (
        ["render", "no_run", "--clip", "a", "--out", "v.mp4"],
        ["register", "--body", "mouse_forelimb", "--keypoints", "k.csv", "--out", "c.h5", "--render", "v.mp4"],
    ):
        r = _cli(env, *argv, cwd=tmp_path)
        err = r.stderr.strip()
        assert r.returncode == 2, err
        assert "Traceback" not in err and "\n" not in err, err
        assert err.startswith(f"mimic {argv[0]}: error: cannot render: ") and says in err
        assert "apt-get install libosmesa6" in err and "MUJOCO_GL=egl" in err
    assert not list(tmp_path.iterdir())


def test_commands_that_do_not_render_ignore_a_bad_mujoco_gl(tmp_path):
    r = _cli({"MUJOCO_GL": "bogus"}, "bodies", cwd=tmp_path)
    assert r.returncode == 0 and "mouse_forelimb" in r.stdout, r.stderr


def test_experiment_checks_its_folder_before_any_rollout(tmp_path):
    """Called from Python, not only from the command line (the reported FileExistsError)."""
    from mimic_mjx.analysis.experiment import experiment

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="output folder .*afile is a file, not a folder"):
        experiment(tmp_path / "no_run", [], tmp_path / "missing.yaml", tmp_path / "afile")
