"""Reference clips: the HDF5 clip format, its reader and writer, and validation.

The format is documented in docs/clip-format.md. The reader also accepts the
single-clip registration-output layout written by stac-mjx (as in
``../shared/data/mouse_arm``). All arrays are SI: metres, radians, seconds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from mimic_mjx.bodies.layout import QVEL_OF_QPOS, reference_velocities
from mimic_mjx.data.clip_checks import FPS_RANGE as FPS_RANGE  # re-exported: the CLI's --fps bound
from mimic_mjx.data.clip_checks import check_clip
from mimic_mjx.data.h5fields import attr_number as _attr_number
from mimic_mjx.data.h5fields import attr_text as _attr_text
from mimic_mjx.data.h5fields import f32 as _f32
from mimic_mjx.data.h5fields import numbers as _numbers
from mimic_mjx.data.h5fields import one_line as _one_line
from mimic_mjx.data.h5fields import strings as _strings
from mimic_mjx.errors import ClipError
from mimic_mjx.files import atomic_hdf5, require_regular_file

FORMAT_NAME = "mimic-mjx-clips"
FORMAT_VERSION = 1
REGISTRATION_LAYOUT_DEFAULT_FPS = 200.0


class JointColumns:
    """qpos / qvel columns per joint of anything with ``joint_names`` and ``joint_qpos_dims`` (clips, clip listings)."""

    @property
    def qpos_dims(self) -> tuple[int, ...]:
        return tuple(self.joint_qpos_dims) or (1,) * len(self.joint_names)

    @property
    def qvel_dims(self) -> tuple[int, ...]:
        return tuple(QVEL_OF_QPOS[d] for d in self.qpos_dims)


@dataclasses.dataclass
class Clip(JointColumns):
    """One reference clip. Arrays are (frames, ...) float32 in SI units."""

    name: str
    body: str
    fps: float
    joint_names: tuple[str, ...]
    qpos: np.ndarray  # (T, nq) rad
    qvel: np.ndarray  # (T, nv) rad/s
    body_names: tuple[str, ...] = ()
    xpos: np.ndarray | None = None  # (T, nbody, 3) m
    xquat: np.ndarray | None = None  # (T, nbody, 4) wxyz
    keypoint_names: tuple[str, ...] = ()
    keypoints: np.ndarray | None = None  # (T, K, 3) m
    marker_offsets: np.ndarray | None = None  # (K, 3) m, in the attached body's frame
    keypoint_residuals: np.ndarray | None = None  # (T, K) m, registration residual per keypoint
    # qpos columns per joint: 1 for hinges/slides, 7 for a free joint (xyz + wxyz
    # quaternion), 4 for a ball joint. Empty means all 1.
    joint_qpos_dims: tuple[int, ...] = ()
    # SHA-256 of the model the clip was registered to (BodyModel.body_hash); None: not recorded.
    body_hash: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def validate(self) -> Clip:
        """Check every array's shape against the names and frame count, and their values; ClipError if not."""
        check_clip(self)
        return self

    def frames(self, sl: slice, name: str) -> Clip:
        """The frames ``sl`` of this clip as a clip named ``name`` (views, not copies)."""
        cut = lambda a: None if a is None else a[sl]
        return dataclasses.replace(
            self,
            name=name,
            qpos=self.qpos[sl],
            qvel=self.qvel[sl],
            xpos=cut(self.xpos),
            xquat=cut(self.xquat),
            keypoints=cut(self.keypoints),
            keypoint_residuals=cut(self.keypoint_residuals),
        )


def finite_difference_velocity(qpos: np.ndarray, fps: float) -> np.ndarray:
    """Joint velocities (rad/s, float32) of a hinge/slide-only clip: ``reference_velocities`` without a layout."""
    return _f32(reference_velocities(qpos, fps))


def _read_registration_layout(f: h5py.File, path: Path, body: str | None, fps: float | None) -> list[Clip]:
    """stac-mjx registration output: one clip per file.

    These files record no frame rate; ``fps`` defaults to 200 Hz, the rate of
    the track-mjx mouse-arm reaching data they come from.
    """
    fps = REGISTRATION_LAYOUT_DEFAULT_FPS if fps is None else fps
    qpos = _numbers(f, "qpos")
    names_qpos = _strings(f, "names_qpos")
    # The stored qvel of these files saturates at +-20 rad/s (stac clips its
    # inferred velocities) while reaches reach 50 rad/s, so derive them.
    qvel = _f32(reference_velocities(qpos, fps))
    body_names = _strings(f, "names_xpos") if "names_xpos" in f else ()
    kp_names = _strings(f, "kp_names") if "kp_names" in f else ()
    keypoints = None
    if "kp_data" in f and kp_names:
        kp = _numbers(f, "kp_data")
        if kp.ndim < 2 or kp[0].size != 3 * len(kp_names):
            raise ClipError(f"'kp_data' has shape {kp.shape}, expected (frames, 3 x {len(kp_names)} keypoints)")
        keypoints = kp.reshape(kp.shape[0], len(kp_names), 3)
    return [
        Clip(
            name=path.stem,
            body=body or "mouse_forelimb",
            fps=float(fps),
            joint_names=names_qpos,
            qpos=qpos,
            qvel=qvel,
            body_names=body_names,
            xpos=_numbers(f, "xpos") if "xpos" in f else None,
            xquat=_numbers(f, "xquat") if "xquat" in f else None,
            keypoint_names=kp_names,
            keypoints=keypoints,
            marker_offsets=_numbers(f, "offsets") if "offsets" in f else None,
        ).validate()
    ]


_PER_KEYPOINT = ("keypoints", "marker_offsets", "keypoint_residuals")


@dataclasses.dataclass(frozen=True)
class NativeHeader:
    """What a file in our format says about all its clips: read without any clip's arrays."""

    body: str
    body_hash: str | None
    joint_names: tuple[str, ...]
    body_names: tuple[str, ...]
    keypoint_names: tuple[str, ...]
    joint_qpos_dims: tuple[int, ...]
    clip_names: tuple[str, ...]  # sorted; () when not listed


def native_header(f: h5py.File, path: Path, list_clips: bool = True) -> NativeHeader:
    """The file's header; ``list_clips``: also its clip names (a file of many clips: not per clip read)."""
    version = int(_attr_number(f.attrs.get("format_version", 0), "attribute 'format_version'"))
    if version > FORMAT_VERSION:
        raise ClipError(
            f"{path}: clip format version {version} is newer than this mimic-mjx "
            f"understands ({FORMAT_VERSION}); upgrade mimic-mjx"
        )
    if "clips" not in f or not isinstance(f["clips"], h5py.Group) or len(f["clips"]) == 0:
        raise ClipError(f"{path}: holds no clips (empty 'clips' group)")
    return NativeHeader(
        body=_attr_text(f.attrs["body"], "attribute 'body'"),
        body_hash=_attr_text(f.attrs["body_hash"], "attribute 'body_hash'") if "body_hash" in f.attrs else None,
        joint_names=_strings(f, "joint_names"),
        body_names=_strings(f, "body_names") if "body_names" in f else (),
        keypoint_names=_strings(f, "keypoint_names") if "keypoint_names" in f else (),
        joint_qpos_dims=tuple(int(d) for d in np.ravel(_numbers(f, "joint_qpos_dims")))
        if "joint_qpos_dims" in f
        else (),
        clip_names=tuple(sorted(f["clips"].keys())) if list_clips else (),
    )


def clip_group(f: h5py.File, name: str) -> tuple[h5py.Group, float]:
    """A clip's group in a file of our format and its frame rate (Hz)."""
    g = f["clips"][name]
    if not isinstance(g, h5py.Group):
        raise ClipError(f"'clips/{name}' is a dataset, expected a clip group")
    return g, _attr_number(g.attrs.get("fps", f.attrs.get("fps", np.nan)), f"clip '{name}': attribute 'fps'")


def require_clip_names(wanted: Sequence[str], names: Sequence[str], where: str = "the clips are") -> None:
    """ClipError for the first of ``wanted`` not among ``names``, listing some of those there are.

    A long recording cut into clips holds hundreds: the listing stops at 12 and gives the count.
    """
    present = set(names)
    unknown = [n for n in wanted if n not in present]
    if unknown:
        shown = ", ".join(list(names)[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        raise ClipError(f"no clip named {unknown[0]!r}; {where}: {shown or 'none'}")


def _read_native(f: h5py.File, path: Path, names: Sequence[str] | None = None) -> list[Clip]:
    h = native_header(f, path, list_clips=names is None)
    body, body_hash, joint_names, body_names = h.body, h.body_hash, h.joint_names, h.body_names
    kp_names, dims = h.keypoint_names, h.joint_qpos_dims
    require_clip_names(names or (), sorted(f["clips"].keys()), f"{path} holds")
    clips = []
    for name in h.clip_names if names is None else names:
        g, fps = clip_group(f, name)
        qpos = _numbers(g, "qpos")
        if "qvel" in g:
            qvel = _numbers(g, "qvel")
        elif any(d != 1 for d in dims):
            raise ClipError(f"{path}: clip '{name}' has free or ball joints and no qvel; store qvel")
        else:
            qvel = _f32(reference_velocities(qpos, fps))
        clips.append(
            Clip(
                name=name,
                body=body,
                fps=fps,
                joint_names=joint_names,
                qpos=qpos,
                qvel=qvel,
                body_names=body_names if "xpos" in g else (),
                xpos=_numbers(g, "xpos") if "xpos" in g else None,
                xquat=_numbers(g, "xquat") if "xquat" in g else None,
                # Names go with every per-keypoint dataset, so offsets are checked against them too.
                keypoint_names=kp_names if any(k in g for k in _PER_KEYPOINT) else (),
                keypoints=_numbers(g, "keypoints") if "keypoints" in g else None,
                marker_offsets=_numbers(g, "marker_offsets") if "marker_offsets" in g else None,
                keypoint_residuals=_numbers(g, "keypoint_residuals") if "keypoint_residuals" in g else None,
                joint_qpos_dims=dims,
                body_hash=body_hash or None,
            ).validate()
        )
    return clips


def read_clips(
    path: str | os.PathLike, *, body: str | None = None, fps: float | None = None, names: Sequence[str] | None = None
) -> list[Clip]:
    """Read the clips of one HDF5 file (our format or stac-mjx registration output).

    ``names``: only these clips of a file in our format, in this order (the
    others' arrays are never read); None: all, sorted by name.
    """
    return with_clip_file(
        path,
        lambda f, path: _read_native(f, path, names),
        lambda f, path: _pick(_read_registration_layout(f, path, body, fps), names, path),
    )


def _pick(clips: list[Clip], names: Sequence[str] | None, path: Path) -> list[Clip]:
    by_name = {c.name: c for c in clips}
    require_clip_names(names or (), list(by_name), f"{path} holds")
    return clips if names is None else [by_name[n] for n in names]


def with_clip_file(path: str | os.PathLike, native, registration):
    """``native(f, path)`` or ``registration(f, path)`` on the open file, by its layout; ClipError for a bad file."""
    path = Path(path)
    if path.is_dir():
        raise ClipError(f"{path} is a folder; pass the .h5 files inside it (e.g. {path}/*.h5)")
    require_regular_file(path, ClipError, "clip file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ClipError(f"cannot read {path} as HDF5 ({_one_line(exc)}); is it a clip file?") from None
    with f:
        try:
            fmt = f.attrs.get("format")
            if isinstance(fmt, (str, bytes)) and _attr_text(fmt, "format") == FORMAT_NAME:
                return native(f, path)
            if "qpos" in f and "names_qpos" in f:
                return registration(f, path)
        except KeyError as exc:
            raise ClipError(f"{path}: missing dataset or attribute {exc}; see docs/clip-format.md") from None
        except ClipError as exc:
            if str(path) in str(exc):
                raise
            raise ClipError(f"{path}: {exc}") from None  # say which file, not just which clip
        except (OSError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, MemoryError) as exc:
            # h5py's and numpy's words for a damaged file: a bad block, a truncated dataset.
            raise ClipError(f"{path}: damaged or unreadable clip file ({_one_line(exc)})") from None
        raise ClipError(
            f"{path}: not a clip file: expected attribute format='{FORMAT_NAME}' or a "
            f"registration output with 'qpos' and 'names_qpos'; see docs/clip-format.md"
        )


def read_clip_files(paths: Sequence[str | os.PathLike], **kwargs) -> list[Clip]:
    """Read clips from several files; clip names are made unique across files."""
    if not paths:
        raise ClipError("no clip files given")
    seen: set[str] = set()
    return [
        dataclasses.replace(clip, name=unique_name(clip.name, p, seen))
        for p in paths
        for clip in read_clips(p, **kwargs)
    ]


def unique_name(name: str, path: str | os.PathLike, seen: set[str]) -> str:
    """``name`` of a clip of ``path``, or ``<file stem>-<name>[-k]`` if taken; added to ``seen``."""
    # Not '/': it is HDF5's path separator, so write_clips could not store the name.
    name = name if name not in seen else f"{Path(path).stem}-{name}"
    base, k = name, 2
    while name in seen:
        name, k = f"{base}-{k}", k + 1
    seen.add(name)
    return name


def _write_numbers(group: h5py.Group, key: str, data, unit: str) -> None:
    # The checksum makes a damaged data block a read error instead of wrong numbers.
    data = _f32(data)
    checked = data.ndim > 0 and data.size > 0  # HDF5 checksums chunks; empty or scalar data has none
    group.create_dataset(key, data=data, fletcher32=checked).attrs["unit"] = unit


def write_clips(path: str | os.PathLike, clips: Sequence[Clip]) -> None:
    """Write clips (all of one body, same names) atomically in our format.

    Two passes over ``clips`` that keep no clip: a lazy sequence
    (``data.clip_files.ClipFiles``) is read clip by clip, twice.
    """
    if not clips:
        raise ClipError("no clips to write")
    first = clips[0]
    hashes: set[str | None] = set()
    with_bodies = with_kp = None  # the first clip with body positions / with keypoint data: (name, names)
    for c in clips:
        c.validate()
        if not c.name or c.name == "." or "/" in c.name:
            raise ClipError(
                f"clip name '{c.name}' cannot be stored in HDF5: use a non-empty name without '/' (and not '.')"
            )
        if c.body != first.body or c.joint_names != first.joint_names or c.qpos_dims != first.qpos_dims:
            raise ClipError(
                f"clip '{c.name}' is for body '{c.body}' with joints {list(c.joint_names)}, "
                f"but '{first.name}' is for '{first.body}' with {list(first.joint_names)}; "
                f"write clips of different bodies to different files"
            )
        hashes.add(c.body_hash)
        if with_bodies is None and c.xpos is not None:
            with_bodies = (c.name, c.body_names)
        if with_kp is None and any(getattr(c, k) is not None for k in _PER_KEYPOINT):
            with_kp = (c.name, c.keypoint_names)
    if len(hashes - {None}) > 1:
        a, b = sorted(hashes - {None})[:2]
        raise ClipError(
            f"the clips were registered to different models of body '{first.body}' (hashes {a[:12]} and "
            f"{b[:12]}); write clips of different models to different files"
        )
    str_dt = h5py.string_dtype()
    # Built in memory (atomic_hdf5): HDF5 2.0 can crash closing a file whose writes failed (a full disk).
    with atomic_hdf5(path) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["body"] = first.body
        if len(hashes) == 1 and first.body_hash:  # one hash for the file: recorded only when every clip has it
            f.attrs["body_hash"] = first.body_hash
        f.attrs["length_unit"] = "m"
        f.attrs["angle_unit"] = "rad"
        f.create_dataset("joint_names", data=np.array(first.joint_names, dtype=object), dtype=str_dt)
        if any(d != 1 for d in first.qpos_dims):
            f.create_dataset("joint_qpos_dims", data=np.array(first.qpos_dims, np.int32))
        if with_bodies:
            f.create_dataset("body_names", data=np.array(with_bodies[1], dtype=object), dtype=str_dt)
        if with_kp:
            f.create_dataset("keypoint_names", data=np.array(with_kp[1], dtype=object), dtype=str_dt)
        grp = f.create_group("clips")
        for c in clips:
            if c.name in grp:
                raise ClipError(f"two clips are named '{c.name}'; clip names must be unique in a file")
            g = grp.create_group(c.name)
            g.attrs["fps"] = float(c.fps)
            _write_numbers(g, "qpos", c.qpos, "rad")
            _write_numbers(g, "qvel", c.qvel, "rad/s")
            if c.xpos is not None:
                if c.body_names != with_bodies[1]:
                    raise ClipError(f"clip '{c.name}' lists different body names than '{with_bodies[0]}'")
                _write_numbers(g, "xpos", c.xpos, "m")
                if c.xquat is not None:
                    _write_numbers(g, "xquat", c.xquat, "wxyz")
            has_kp = any(getattr(c, k) is not None for k in _PER_KEYPOINT)
            if has_kp and c.keypoint_names != with_kp[1]:
                raise ClipError(f"clip '{c.name}' lists different keypoint names than '{with_kp[0]}'")
            if c.keypoints is not None:
                _write_numbers(g, "keypoints", c.keypoints, "m")
            if c.marker_offsets is not None:
                _write_numbers(g, "marker_offsets", c.marker_offsets, "m")
            if c.keypoint_residuals is not None:
                _write_numbers(g, "keypoint_residuals", c.keypoint_residuals, "m")
