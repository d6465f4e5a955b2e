"""The body a run trains, kept in its folder (``RUN/body/``, bodies/stored.py).

A new run stores its body before training; every later use of the run
(``load_policy`` and so evaluate, rollout, experiment, render, export; a
resumed training) builds its task from that copy, so moving, editing or
deleting the body's own files changes nothing about the run. Runs written
before bodies were stored have no ``body/`` and use the body their config
names, as they always did.

Resuming refuses a body whose model changed since the run started (the
checkpoint was trained on the stored one) and names what changed; the user
either restores the body's files or resumes with the stored body
(``stored_body=True``, ``mimic train --resume --stored-body``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.model import BodyModel
from mimic_mjx.bodies.stored import (
    body_changes,
    field_changes,
    has_stored_body,
    load_stored_body,
    save_body,
    short_hash,
)
from mimic_mjx.errors import BodyError, RunDirError

#: The folder of a run that holds its body.
BODY_DIR = "body"


def body_dir(run_dir: Path) -> Path:
    return Path(run_dir) / BODY_DIR


def store_run_body(run_dir: Path, body: BodyModel) -> dict:
    """Keep ``body`` in the run folder (overwriting an earlier copy); the metadata written."""
    return save_body(body, body_dir(run_dir))


def _stored(run_dir: Path) -> tuple[BodyModel, dict]:
    try:
        return load_stored_body(body_dir(run_dir))
    except BodyError as exc:
        raise RunDirError(f"{run_dir}: {exc}") from None


def _original(name: str) -> tuple[BodyModel | None, str]:
    """The body ``name`` gives now, or None and why not (its files moved or deleted, or broken)."""
    try:
        return get_body(name), ""
    except BodyError as exc:
        return None, str(exc)


def run_body(run_dir: Path, name: str, log: Callable[[str], None]) -> BodyModel | None:
    """The body to roll a run out with: its stored body, or None for a run that stores none (use ``name``).

    When the body's own files give another model now, the stored one is used and one line says so.
    """
    run_dir = Path(run_dir)
    if not has_stored_body(body_dir(run_dir)):
        return None
    current, _ = _original(name)
    try:
        stored, meta = _stored(run_dir)
    except RunDirError as exc:
        if current is None:
            raise
        # An MJB this MuJoCo cannot load (written by another version), but the body's files are there.
        log(f"note: {exc}; using body '{current.display_name}' from its own files")
        return None
    if current is not None and (current.simulated_hash() != meta["model_sha256"] or field_changes(meta, current)):
        log(
            f"note: body '{stored.display_name}' changed since {run_dir} was trained "
            f"({'; '.join(body_changes(stored, meta, current)) or 'same sizes and fields, other values'}); "
            f"using the copy stored in {body_dir(run_dir)}"
        )
    return stored


def resume_body(run_dir: Path, name: str, log: Callable[[str], None], stored_body: bool = False) -> BodyModel:
    """The body a resumed run continues with; RunDirError naming what changed when its files changed."""
    run_dir = Path(run_dir)
    if not has_stored_body(body_dir(run_dir)):
        return get_body(name)  # a run from before bodies were stored: as it always resumed
    stored, meta = _stored(run_dir)
    current, why = _original(name)
    if current is None:
        log(f"note: body '{stored.display_name}' cannot be read now ({why}); resuming with the stored copy")
        return stored
    changes = body_changes(stored, meta, current)
    if not changes and current.simulated_hash() == meta["model_sha256"]:
        return current
    if stored_body:
        log(
            f"note: body '{stored.display_name}' changed ({'; '.join(changes) or 'other values'}); "
            "resuming with the stored copy"
        )
        return stored
    raise RunDirError(
        f"body '{stored.display_name}' changed since {run_dir} started (model {short_hash(meta['model_sha256'])} -> "
        f"{short_hash(current.simulated_hash())}: {'; '.join(changes) or 'same sizes and fields, other values'}); "
        f"restore its files, resume with the body the run was trained with (--stored-body), "
        f"or train the changed body in a new --run-dir"
    )


def has_run_body(run_dir: Path) -> bool:
    """Whether the run folder keeps its body (runs written before bodies were stored do not)."""
    return has_stored_body(body_dir(run_dir))
