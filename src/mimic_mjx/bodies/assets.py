"""Bodies loaded from dm_control's installed assets (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

from mimic_mjx.errors import BodyError

WALKER_ASSETS = ("locomotion", "walkers", "assets")


def dm_control_walker_asset(relative: str, body: str) -> Path:
    """Path of a walker asset inside the installed dm_control package."""
    try:
        import dm_control
    except ImportError as exc:  # pragma: no cover - dm_control is a dependency
        raise BodyError(f"the {body} body needs dm_control installed (pip install dm_control)") from exc
    path = Path(dm_control.__file__).resolve().parent.joinpath(*WALKER_ASSETS, relative)
    if not path.is_file():
        raise BodyError(
            f"dm_control is installed but its {body} model is missing at {path}; reinstall dm_control (>= 1.0.16)"
        )
    return path
