"""Video containers: checking and opening a footage file, and choosing its video stream.

Shared by decoding (:mod:`likeness.footage`, :mod:`likeness.parallel_decoding`) and
describing (:mod:`likeness.probing`), so that every reader refuses the same files with the
same one-line messages and reads the same stream.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import av
import av.error

from likeness.errors import FootageError


def checked_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it is a readable, non-empty regular file."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise FootageError(
                f"{p}: is a broken symbolic link (its target does not exist); "
                "point it at the video file or name the file itself"
            ) from None
        raise FootageError(
            f"{p}: no such file; check the path (relative paths are taken from {Path.cwd()})"
        ) from None
    except OSError as exc:
        raise FootageError(
            f"{p}: cannot be accessed ({exc.strerror}); check the path and its permissions"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise FootageError(f"{p}: is a directory, not a video file; name the video file itself")
    if not stat.S_ISREG(info.st_mode):
        raise FootageError(f"{p}: is not a regular file (a device, pipe or socket); copy the "
                           "video to a file and name that")
    if info.st_size == 0:
        raise FootageError(
            f"{p}: is empty (0 bytes); the copy or download failed, copy the evidence again"
        )
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise FootageError(
            f"{p}: cannot be read ({exc.strerror}); give this user read permission"
        ) from None
    return p


def _describe_unopenable(path: Path, exc: Exception) -> str:
    """Say why FFmpeg could not open ``path``, telling a damaged MP4 from a non-media file."""
    with path.open("rb") as f:
        head = f.read(64)
    if head[4:8] == b"ftyp":
        return (
            f"{path}: looks like an MP4/MOV file (it starts with an 'ftyp' box) but FFmpeg "
            f"cannot read it ({exc}); the file is probably truncated (its index, the 'moov' "
            "box, that MP4 writers put at the end, is missing) or damaged; obtain a complete "
            "copy of the evidence"
        )
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    kind = "a text file" if printable == len(head) else "not a video container FFmpeg knows"
    return (
        f"{path}: is not a media file ({kind}; first bytes {head[:16]!r}; FFmpeg: {exc}); "
        "check that the right file was named"
    )


def open_container(path: Path) -> av.container.InputContainer:
    try:
        # metadata_errors='replace': a title in a legacy encoding must not stop the analysis.
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise FootageError(_describe_unopenable(path, exc)) from exc


# FFmpeg demuxers that read a single still picture, not a video.
_STILL_IMAGE_DEMUXERS = ("image2", "image2pipe")


def _refuse_still_image(container: av.container.InputContainer, path: Path) -> None:
    name = container.format.name
    if name in _STILL_IMAGE_DEMUXERS or name.endswith("_pipe"):
        codecs = [s.codec_context.name for s in container.streams.video]
        kind = ", ".join(codecs) or name
        raise FootageError(
            f"{path}: is a still image ({kind}), not a video; list photos under "
            "claimant.references (or the population), and only video files under footage"
        )


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    """The video stream that is the footage, chosen the same way for probing and decoding.

    Attached cover pictures are not footage. With several video streams: the one the file
    marks as default when exactly one is so marked, otherwise the one with most frames (then
    the largest picture, then the first). :func:`choose_stream` says which and why.
    """
    return choose_stream(container, path)[0]


def choose_stream(
    container: av.container.InputContainer, path: Path
) -> tuple[av.video.VideoStream, str]:
    _refuse_still_image(container, path)
    attached_pic = int(av.stream.Disposition.attached_pic)
    candidates = [s for s in container.streams.video if not int(s.disposition) & attached_pic]
    if not candidates:
        found = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams) or "none"
        raise FootageError(
            f"{path}: has no video stream (streams found: {found}); "
            "an audio-only or data file cannot be analysed for faces, name the video file"
        )
    if len(candidates) == 1:
        return candidates[0], "the only video stream"
    default = int(av.stream.Disposition.default)
    marked = [s for s in candidates if int(s.disposition) & default]
    if len(marked) == 1:
        chosen, why = marked[0], "the stream the file marks as default"
    else:
        def size(s: av.video.VideoStream) -> tuple[int, int, int]:
            area = (s.codec_context.width or 0) * (s.codec_context.height or 0)
            return (s.frames or 0, area, -s.index)

        chosen, why = max(candidates, key=size), "the stream with most frames"
    others = ", ".join(f"#{s.index}" for s in candidates if s is not chosen)
    return chosen, (
        f"stream #{chosen.index} of {len(candidates)} video streams, {why}; "
        f"not analysed: {others}"
    )
