"""Headless OpenGL: MuJoCo's GL backend, chosen and checked before mujoco is first imported.

MuJoCo reads MUJOCO_GL once, when it is imported, and an unusable value makes
``import mujoco`` itself fail: an unknown value raises RuntimeError, OSMesa or
EGL that is not installed an AttributeError (``glGetError`` of a missing
library), a PYOPENGL_PLATFORM that contradicts MUJOCO_GL an ImportError. Every
command would die with a traceback, though only rendering needs GL. So the
choice is checked here first (``mimic_mjx/__init__.py`` calls
``choose_backend``): an unusable one is replaced by MUJOCO_GL=disable, which
simulation does not mind, and the reason is kept in ``PROBLEM``, which the
renderer reports as a one-line error when asked to draw.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys
from collections.abc import Callable, MutableMapping

# MuJoCo's own list (mujoco/rendering/classic/gl_context.py) per system.
_DISABLED = ("disable", "disabled", "off", "false", "0")
_VALID = {
    "Linux": ("enable", "enabled", "on", "true", "1", "glfw", "", "glx", "egl", "osmesa"),
    "Windows": ("enable", "enabled", "on", "true", "1", "glfw", "", "wgl"),
    "Darwin": ("enable", "enabled", "on", "true", "1", "glfw", "", "cgl"),
}
# The shared library each headless backend loads (through PyOpenGL).
_LIBRARY = {"osmesa": "OSMesa", "egl": "EGL"}

HELP = (
    "for software rendering install OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa "
    "(PYOPENGL_PLATFORM unset or osmesa); on a GPU install EGL (apt-get install libegl1, and the GPU's driver) "
    "and set MUJOCO_GL=egl; on a desktop with a display, MUJOCO_GL=glfw"
)

# Why rendering cannot work in this process (None: it may); set by choose_backend.
PROBLEM: str | None = None


def choose_backend(
    environ: MutableMapping[str, str] = os.environ,
    find_library: Callable[[str], str | None] = ctypes.util.find_library,
    system: str | None = None,
) -> str | None:
    """Set MUJOCO_GL to a backend that imports; return (and keep in PROBLEM) why none can render, or None.

    Without MUJOCO_GL and without a display, picks OSMesa where installed, else
    EGL (or the one PYOPENGL_PLATFORM names). Does nothing once mujoco is
    imported: its choice is made then.
    """
    global PROBLEM
    if "mujoco" in sys.modules and environ is os.environ:
        return PROBLEM
    system = system or platform.system()
    requested = environ.get("MUJOCO_GL")
    wanted = (environ.get("PYOPENGL_PLATFORM") or "").strip().lower()
    problem = None
    if requested is None:
        if environ.get("DISPLAY") or system != "Linux":
            return None  # a desktop: MuJoCo's default (GLFW) needs no choice
        choices = [wanted] if wanted in _LIBRARY else ["osmesa", "egl"]
        found = next((c for c in choices if find_library(_LIBRARY[c])), None)
        if found is None:
            libs = " or ".join(f"lib{_LIBRARY[c]}" for c in choices)
            problem = f"no OpenGL library for rendering without a display is installed ({libs} not found)"
        else:
            environ["MUJOCO_GL"] = found
            if found == "osmesa":
                environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    else:
        value = requested.strip().lower()
        if value in _DISABLED:
            problem = f"MUJOCO_GL={requested} turns rendering off"
        elif value not in _VALID.get(system, _VALID["Linux"]):
            known = ", ".join(v for v in _VALID.get(system, _VALID["Linux"]) if v in ("osmesa", "egl", "glfw", "cgl"))
            problem = f"MUJOCO_GL={requested!r} is not an OpenGL backend MuJoCo knows ({known})"
        elif value in _LIBRARY:
            if wanted and wanted != value:
                problem = (
                    f"MUJOCO_GL={value} but PYOPENGL_PLATFORM={environ['PYOPENGL_PLATFORM']}; they must agree "
                    f"(unset PYOPENGL_PLATFORM or set it to {value})"
                )
            elif not find_library(_LIBRARY[value]):
                problem = f"MUJOCO_GL={value} but lib{_LIBRARY[value]} is not installed"
    if problem is not None:
        environ["MUJOCO_GL"] = "disable"  # mujoco then imports, and simulates, without GL
    if environ is os.environ:
        PROBLEM = problem
    return problem
