"""The catalogue's videos: listed from a folder, a glob or a manifest, hashed and probed on intake.

``--videos`` accepts

* a folder: every file below it (recursively) whose suffix is in ``VIDEO_SUFFIXES``;
* a glob pattern (``'catalogue/**/*.mp4'``, quoted so the shell leaves it alone);
* a manifest CSV (a file ending in ``.csv``): a ``path`` column (relative paths are relative to
  the manifest) and, optionally, a ``video`` column naming each video.

Each video is named by its path relative to the listing's root (the folder, the fixed part of
the glob, or the manifest's folder), with '/' separators: the name is what the output tables
show, and it stays the same whichever machine or worker screens the video. Videos are listed in
sorted order of that name, so two runs over the same catalogue list them identically.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from likeness import probing
from likeness.errors import CaseError, FootageError
from likeness.files import sha256_file

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".flv")
LISTING_COLUMNS = ["video", "path"]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _from_manifest(manifest: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CaseError(f"{manifest}: cannot be read as a CSV manifest ({exc})") from exc
    if "path" not in table.columns:
        raise CaseError(f"{manifest}: no 'path' column; add one naming each video file")
    paths = [Path(p) if Path(p).is_absolute() else manifest.parent / p for p in table["path"]]
    if "video" in table.columns:
        names = table["video"].tolist()
    else:
        root = _common_folder(paths)
        names = [_relative_name(p, root) for p in paths]
    for i, name in enumerate(names):
        if not name:
            raise CaseError(f"{manifest}: row {i + 2}: empty 'video' name; name every video")
    return pd.DataFrame({"video": names, "path": [str(p) for p in paths]})


def _common_folder(paths: list[Path]) -> Path:
    """The deepest folder holding every path (the root video names are relative to)."""
    if not paths:
        return Path(".")
    return Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths]))


def _relative_name(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive
        return Path(path).as_posix()


def list_videos(spec: str | os.PathLike[str]) -> pd.DataFrame:
    """The videos named by ``spec`` (folder, glob or manifest CSV): columns ``video``, ``path``.

    Raises CaseError when nothing is listed or two videos get the same name.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        table = pd.DataFrame(
            {"video": [_relative_name(p, path) for p in files], "path": [str(p) for p in files]}
        )
    elif path.suffix.lower() == ".csv" and path.is_file():
        table = _from_manifest(path)
    elif glob.has_magic(text):
        root = _glob_root(text)
        files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        table = pd.DataFrame(
            {"video": [_relative_name(p, root) for p in files], "path": [str(p) for p in files]}
        )
    else:
        raise CaseError(
            f"--videos {text}: not a folder, a glob pattern or a manifest .csv; "
            "name a folder of videos, quote a pattern such as 'dir/**/*.mp4', or a CSV with "
            "a 'path' column"
        )
    if table.empty:
        raise CaseError(f"--videos {text}: no video found (suffixes: {', '.join(VIDEO_SUFFIXES)})")
    duplicated = table["video"][table["video"].duplicated()]
    if len(duplicated):
        raise CaseError(
            f"--videos {text}: the name {duplicated.iloc[0]!r} is given to two videos; "
            "name them apart (a 'video' column in a manifest)"
        )
    return table.sort_values("video", kind="stable", ignore_index=True)[LISTING_COLUMNS]


def result_stem(video: str) -> str:
    """A file name for a video's per-video results: its name with '/' and odd characters
    replaced, plus a short hash of the name so that two names never collide."""
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", video).strip("._")[:80] or "video"
    return f"{slug}-{hashlib.sha256(video.encode('utf-8')).hexdigest()[:8]}"


def intake_video(path: str | os.PathLike[str]) -> dict[str, Any]:
    """SHA-256, size and probe of one video (the screening's intake record of it).

    Raises FootageError naming the file when it cannot be read or is not a video.
    """
    try:
        sha = sha256_file(path)
        size = os.path.getsize(path)
    except OSError as exc:
        raise FootageError(f"{path}: cannot be read ({exc.strerror}); check the path") from exc
    return {"sha256": sha, "size_bytes": size, "probe": probing.probe_video(path)}
