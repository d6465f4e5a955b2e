"""CSV keypoint tables: Anipose 3D output and DeepLabCut 3D output.

Anipose writes one row per frame with ``<keypoint>_x/_y/_z/_score`` columns
(and ``fnum`` frame numbers, so dropped frames stay gaps); DeepLabCut writes
multi-row headers (``scorer``, ``individuals``, ``bodyparts``, ``coords``).
Neither records a unit or a frame rate. (Not named csv.py, to keep the
standard library's csv unambiguous.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mimic_mjx.data.keypoints.common import _Raw, _warn
from mimic_mjx.errors import KeypointError


def _blank(row: list[str]) -> bool:
    return not any(c.strip() for c in row)


def _data_rows(rows: list[list[str]], path: Path, first_line: int, numbered: bool) -> list[list[str]]:
    """The data rows, never silently dropping one where that would shift later frames in time.

    With frame numbers, blank rows carry nothing and are dropped (each row is placed
    by its number). Without, a row of empty cells is a frame with no keypoints and
    stays; an empty line is refused, since which frame it stands for is unknown.
    """
    if not rows:
        raise KeypointError(f"{path}: the CSV file has a header but no data rows")
    if numbered:
        return [r for r in rows if not _blank(r)]
    for i, r in enumerate(rows):
        if len(r) <= 1 and _blank(r):
            raise KeypointError(
                f"{path}: line {first_line + i} is empty; in a table without frame numbers an empty line would "
                f"shift later frames in time. Write a row of empty cells for a frame without keypoints, or "
                f"add an 'fnum' frame-number column"
            )
    return rows


def _float_table(rows: list[list[str]], path: Path, first_line: int) -> np.ndarray:
    if not rows:
        raise KeypointError(f"{path}: the CSV file holds no data rows with values")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise KeypointError(
            f"{path}: line {first_line + bad} has {len(rows[bad])} values, but line "
            f"{first_line} has {len(rows[0])}; the CSV table is ragged"
        )
    try:
        return np.array([[v.strip() or "nan" for v in r] for r in rows]).astype(np.float64)
    except ValueError as exc:
        raise KeypointError(
            f"{path}: a value is not a number ({exc}); keypoint CSV cells must be numbers or empty"
        ) from None


def _read_csv(path: Path) -> _Raw:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        rows, lines = [], []
        for r in reader:
            rows.append(r)
            lines.append(reader.line_num)
    # Blank lines before the header or after the last row shift nothing.
    start = next((i for i, r in enumerate(rows) if not _blank(r)), len(rows))
    end = next((i for i in range(len(rows), 0, -1) if not _blank(rows[i - 1])), 0)
    if start >= end:
        raise KeypointError(f"{path}: the CSV file is empty")
    first_line = lines[start]
    rows = rows[start:end]
    if rows[0][0].strip().lower() == "scorer":
        return _read_dlc_csv(path, rows, first_line)
    return _read_anipose_csv(path, rows, first_line)


def _read_anipose_csv(path: Path, rows: list[list[str]], first_line: int = 1) -> _Raw:
    header = [c.strip() for c in rows[0]]
    names = [c[:-2] for c in header if c.endswith("_x")]
    if not names:
        raise KeypointError(
            f"{path}: not a keypoint CSV mimic-mjx knows: expected Anipose 3D columns "
            f"'<keypoint>_x, _y, _z' or a DeepLabCut CSV whose first cell is 'scorer'"
        )
    flat = [n for n in names if f"{n}_z" not in header]
    if flat:
        raise KeypointError(
            f"{path}: keypoint(s) {flat} have no '_z' column: 2D keypoints. mimic-mjx needs 3D "
            f"keypoints: triangulate first (e.g. anipose triangulate)"
        )
    missing_y = [n for n in names if f"{n}_y" not in header]
    if missing_y:
        raise KeypointError(f"{path}: keypoint(s) {missing_y} have '_x' and '_z' but no '_y' column")
    col = {c: i for i, c in enumerate(header)}
    data = _data_rows(rows[1:], path, first_line + 1, numbered="fnum" in col)
    table = _float_table(data, path, first_line=first_line + 1)
    positions = np.stack([table[:, [col[f"{n}_x"], col[f"{n}_y"], col[f"{n}_z"]]] for n in names], axis=1)
    has_score = all(f"{n}_score" in col for n in names)
    confidence = np.stack([table[:, col[f"{n}_score"]] for n in names], axis=1) if has_score else None
    if "fnum" in col:  # Anipose frame numbers: place rows on them so dropped frames stay gaps
        positions, confidence = _by_frame_number(table[:, col["fnum"]], positions, confidence, path)
    return _Raw(positions=positions, what="Anipose CSV files", confidence=confidence, names=tuple(names))


def _by_frame_number(fnum: np.ndarray, positions: np.ndarray, confidence, path: Path, column: str = "'fnum'"):
    if not np.isfinite(fnum).all() or (fnum != np.round(fnum)).any():
        raise KeypointError(f"{path}: {column} must hold whole frame numbers")
    span = float(fnum.max() - fnum.min()) + 1
    if span > 100 * len(fnum) + 1000:  # a damaged number would otherwise allocate a vast empty recording
        raise KeypointError(f"{path}: {column} spans {span:.0f} frames for {len(fnum)} rows; a frame number is wrong")
    frames = fnum.astype(np.int64) - int(fnum.min())
    if len(np.unique(frames)) != len(frames):
        raise KeypointError(f"{path}: frame numbers in {column} repeat; expected one row per frame")
    T = int(frames.max()) + 1
    placed = np.full((T,) + positions.shape[1:], np.nan)
    placed[frames] = positions
    placed_conf = None
    if confidence is not None:
        placed_conf = np.zeros((T, positions.shape[1]))
        placed_conf[frames] = confidence
    return placed, placed_conf


def _read_dlc_csv(path: Path, rows: list[list[str]], first_line: int = 1) -> _Raw:
    labels = {}
    n_header = 0
    for r in rows[:5]:
        key = r[0].strip().lower()
        if key not in ("scorer", "individuals", "bodyparts", "coords"):
            break
        labels[key] = [c.strip() for c in r]
        n_header += 1
    if "bodyparts" not in labels or "coords" not in labels:
        raise KeypointError(
            f"{path}: a DeepLabCut CSV needs header rows 'scorer', 'bodyparts' and 'coords'; found {list(labels)}"
        )
    coords = labels["coords"]
    width = len(coords)
    individuals = labels.get("individuals", [""] * width)
    columns: dict[tuple[str, str], dict[str, int]] = {}  # (individual, bodypart) -> coord -> column
    for j in range(1, width):
        if coords[j]:
            key = (individuals[j] if j < len(individuals) else "", labels["bodyparts"][j])
            columns.setdefault(key, {})[coords[j].lower()] = j
    if not columns:
        raise KeypointError(f"{path}: the DeepLabCut 'coords' row names no x/y/z columns")
    flat = [bp for (_, bp), c in columns.items() if "z" not in c]
    if flat:
        raise KeypointError(
            f"{path}: DeepLabCut keypoint(s) {flat} have no 'z' coordinate: 2D output. mimic-mjx "
            f"needs 3D keypoints: triangulate first (DeepLabCut 3D or anipose)"
        )
    animals = list(dict.fromkeys(ind for ind, _ in columns))
    if len(animals) > 1:
        _warn(f"{path}: holds {len(animals)} individuals {animals}; reading the first, '{animals[0]}'")
    parts = [(bp, c) for (ind, bp), c in columns.items() if ind == animals[0]]
    incomplete = [bp for bp, c in parts if not {"x", "y"} <= set(c)]
    if incomplete:
        raise KeypointError(f"{path}: DeepLabCut keypoint(s) {incomplete} lack an x or y column")
    # The first column is DeepLabCut's frame index: rows are placed by it, so a dropped row stays a gap.
    data = _data_rows(rows[n_header:], path, first_line + n_header, numbered=True)
    table = _float_table([r[:width] + [""] * (width - len(r)) for r in data], path, first_line + n_header)
    positions = np.stack([table[:, [c["x"], c["y"], c["z"]]] for _, c in parts], axis=1)
    has_likelihood = all("likelihood" in c for _, c in parts)
    confidence = np.stack([table[:, c["likelihood"]] for _, c in parts], axis=1) if has_likelihood else None
    positions, confidence = _by_frame_number(table[:, 0], positions, confidence, path, "the frame index (first column)")
    return _Raw(
        positions=positions, what="DeepLabCut CSV files", confidence=confidence, names=tuple(bp for bp, _ in parts)
    )
