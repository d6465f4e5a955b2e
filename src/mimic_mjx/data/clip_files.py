"""Clip files read lazily: list the clips without their arrays, read one when it is used.

A long recording cut into 5-s clips is hundreds of MB of HDF5; training binds
every clip once (``data.binding``), evaluation, rollouts and videos may use a
few. ``list_clips`` reads names, frame counts and rates only (HDF5 metadata);
``ClipFiles`` is a sequence of clips that reads each one's datasets when it is
indexed and keeps none, so binding from it holds one clip at a time beside the
reference bank (docs/clip-format.md, "Reading lazily").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from mimic_mjx.data.clips import (
    FORMAT_NAME,
    REGISTRATION_LAYOUT_DEFAULT_FPS,
    Clip,
    JointColumns,
    clip_group,
    native_header,
    read_clips,
    require_clip_names,
    unique_name,
    with_clip_file,
    write_clips,
)
from mimic_mjx.data.h5fields import strings
from mimic_mjx.errors import ClipError


@dataclasses.dataclass(frozen=True)
class ClipInfo(JointColumns):
    """One clip as its file lists it: what binding checks, without the arrays.

    Has the ``Clip`` attributes that binding checks before it reads any frames.
    """

    name: str  # unique across the files opened together (see ``read_clip_files``)
    body: str
    fps: float
    joint_names: tuple[str, ...]
    num_frames: int
    path: Path
    stored_name: str  # the clip's name inside its file
    body_names: tuple[str, ...] = ()
    joint_qpos_dims: tuple[int, ...] = ()
    body_hash: str | None = None

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def _frames(group, key: str = "qpos") -> int:
    ds = group[key]
    if not hasattr(ds, "shape") or ds.shape is None or len(ds.shape) != 2:
        raise ClipError(f"'{key}' has shape {getattr(ds, 'shape', None)}, expected (frames, columns)")
    return int(ds.shape[0])


def list_clips(path: str | os.PathLike, *, body: str | None = None, fps: float | None = None) -> list[ClipInfo]:
    """The clips of one file (names sorted), from its metadata alone; the same errors as ``read_clips``."""

    def native(f, path):
        h = native_header(f, path)
        infos = []
        for name in h.clip_names:
            g, rate = clip_group(f, name)
            infos.append(
                ClipInfo(
                    name=name,
                    body=h.body,
                    fps=rate,
                    joint_names=h.joint_names,
                    num_frames=_frames(g),
                    path=path,
                    stored_name=name,
                    body_names=h.body_names if "xpos" in g else (),
                    joint_qpos_dims=h.joint_qpos_dims,
                    body_hash=h.body_hash or None,
                )
            )
        return infos

    def registration(f, path):
        names = strings(f, "names_qpos")
        return [
            ClipInfo(
                name=path.stem,
                body=body or "mouse_forelimb",
                fps=float(REGISTRATION_LAYOUT_DEFAULT_FPS if fps is None else fps),
                joint_names=names,
                num_frames=_frames(f),
                path=path,
                stored_name=path.stem,
                body_names=strings(f, "names_xpos") if "names_xpos" in f else (),
            )
        ]

    return with_clip_file(path, native, registration)


class ClipFiles(Sequence[Clip]):
    """Clips of one or more files, listed up front and read from disk each time one is indexed.

    Nothing is cached: a clip's arrays live as long as the caller holds the
    ``Clip``. ``infos`` and ``names`` cost no reading.
    """

    def __init__(self, infos: Sequence[ClipInfo], *, body: str | None = None, fps: float | None = None):
        self.infos = tuple(infos)
        self._options = {"body": body, "fps": fps}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ClipFiles(self.infos[i], **self._options)
        info = self.infos[i]
        (clip,) = read_clips(info.path, names=[info.stored_name], **self._options)
        return dataclasses.replace(clip, name=info.name)

    def select(self, names: Sequence[str]) -> ClipFiles:
        """The named clips, in this order; ClipError naming the clips there are when one is not."""
        by_name = {i.name: i for i in self.infos}
        require_clip_names(names, list(by_name))
        return ClipFiles([by_name[n] for n in names], **self._options)


def open_clip_files(paths: Sequence[str | os.PathLike], **kwargs) -> ClipFiles:
    """``read_clip_files`` without reading the arrays: the same clips, names and order, read when indexed."""
    if not paths:
        raise ClipError("no clip files given")
    infos: list[ClipInfo] = []
    seen: set[str] = set()
    for p in paths:
        for info in list_clips(p, **kwargs):
            # The renaming of ``read_clip_files``, so both give the same names.
            infos.append(dataclasses.replace(info, name=unique_name(info.name, p, seen)))
    return ClipFiles(infos, **kwargs)


def whole_file(clips: Sequence[Clip]) -> Path | None:
    """The file ``clips`` are, when they are every clip of one file in our format under their own names."""
    if not isinstance(clips, ClipFiles) or not clips.infos:
        return None
    path = clips.infos[0].path
    if any(i.path != path or i.name != i.stored_name for i in clips.infos):
        return None
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT_NAME:
            return None
    if sorted(i.name for i in clips.infos) != [i.name for i in list_clips(path)]:
        return None
    return path


def store_clips(path: str | os.PathLike, clips: Sequence[Clip]) -> None:
    """``write_clips``, except that every clip of one file is stored as a copy of that file.

    ``write_clips`` builds the file in memory (``files.atomic_hdf5``), which for
    an hours-long clip file beside its reference bank doubles a run's memory;
    a byte copy streams from disk (atomically, through ``files.atomic_path``).
    """
    src = whole_file(clips)
    if src is None:
        write_clips(path, clips)
        return
    import shutil

    from mimic_mjx.files import atomic_path

    with atomic_path(path) as tmp:
        shutil.copyfile(src, tmp)
