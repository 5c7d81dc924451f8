"""AI-generation labels a video carries: C2PA manifests and metadata labels.

Checked, and nothing else (``LABEL_FORMATS`` is written into every screening's record):

1. **C2PA** manifest store, read with ``c2pa-python`` (``c2pa.Reader``; embedded manifests in
   the formats the C2PA SDK supports, MP4/MOV among them). AI generation is declared when an
   action of a ``c2pa.actions`` or ``c2pa.actions.v2`` assertion of any manifest has an IPTC
   digital source type of ``AI_SOURCE_TYPES``. The manifest's validation state is reported
   beside it (a manifest that does not validate is still reported, as such).
2. **GB 45438-2025 implicit label** (China's Measures for Labelling AI-Generated Synthetic
   Content, in force since 2025-09-01, and their mandatory standard): the metadata key
   ``AIGC`` whose value is JSON with ``Label`` (1 = AI-generated, 2 = possibly, 3 =
   suspected), ``ContentProducer``, ``ProduceID``, ``ContentPropagator``, ``PropagateID`` and
   reserved codes. Looked for
   a. as a container or stream metadata tag named ``AIGC`` (any case), as FFmpeg reads tags
      (MP4/MOV ``udta``/``ilst`` and ``mdta`` keys, Matroska/WebM tags, ...);
   b. as the XMP property ``TC260:AIGC`` (namespace ``http://www.tc260.org.cn/ns/AIGC/1.0/``,
      element or attribute form) in an XMP packet of the file.
3. **IPTC digital source type** in an XMP packet (``Iptc4xmpExt:DigitalSourceType``) with a
   value of ``AI_SOURCE_TYPES``.

XMP packets are looked for in the ISO-BMFF boxes of MP4/MOV files other than the media data
(``mdat``: the XMP ``uuid`` box, ``moov/udta/XMP_``, ``meta``), and in the first
``XMP_SCAN_BYTES`` of other containers. Invisible watermarks in the pixels, explicit (visible)
labels and labels in a platform's own database are not checked.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import av

LABEL_FORMATS = (
    "C2PA manifest store (c2pa-python Reader): c2pa.actions / c2pa.actions.v2 digitalSourceType",
    "GB 45438-2025 implicit label: container/stream metadata tag 'AIGC' (as FFmpeg reads tags)",
    "GB 45438-2025 implicit label: XMP TC260:AIGC (http://www.tc260.org.cn/ns/AIGC/1.0/)",
    "IPTC digital source type in XMP (Iptc4xmpExt:DigitalSourceType)",
)
AI_SOURCE_TYPES = (
    "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "algorithmicMedia",
    "compositeSynthetic",
)
XMP_SCAN_BYTES = 4 << 20
# Boxes (other than mdat) read whole when looking for XMP: a moov of hours of video is a few MB.
MAX_BOX_BYTES = 64 << 20
LABEL_COLUMNS = ["c2pa", "c2pa_ai", "aigc_label", "iptc_source_type", "ai_declared"]

_XMP = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>", re.S)
_TC260_ELEMENT = re.compile(r"<(\w+):AIGC>(.*?)</\1:AIGC>", re.S)
_TC260_ATTRIBUTE = re.compile(r"\b(\w+):AIGC\s*=\s*(\"[^\"]*\"|'[^']*')", re.S)
_IPTC_SOURCE = re.compile(r"DigitalSourceType(?:>|\s*=\s*[\"']|[^>]*resource=[\"'])\s*([^<\"']+)")


def _c2pa(path: Path) -> tuple[str, bool]:
    """('' | 'valid' | 'invalid' | other validation state | 'unreadable: ...', AI declared)."""
    import c2pa

    try:
        with c2pa.Reader(str(path)) as reader:
            store = json.loads(reader.json())
            state = str(store.get("validation_state") or reader.get_validation_state() or "")
    except c2pa.C2paError.ManifestNotFound:
        return "", False
    except c2pa.C2paError.NotSupported:
        return "", False
    except c2pa.C2paError as exc:
        return f"unreadable: {exc}", False
    ai = False
    for manifest in (store.get("manifests") or {}).values():
        for assertion in manifest.get("assertions") or []:
            if not str(assertion.get("label", "")).startswith("c2pa.actions"):
                continue
            for action in (assertion.get("data") or {}).get("actions") or []:
                source = str(action.get("digitalSourceType") or "")
                ai |= source.rsplit("/", 1)[-1] in AI_SOURCE_TYPES
    return state.lower() or "present", ai


def _metadata_tag(path: Path) -> str:
    """The value of an 'AIGC' metadata tag of the container or a stream ('' if none)."""
    try:
        with av.open(str(path)) as container:
            tag_sets = [container.metadata] + [s.metadata for s in container.streams]
    except (av.error.FFmpegError, OSError):
        return ""
    for tags in tag_sets:
        for key, value in tags.items():
            if key.lower() == "aigc" and value:
                return str(value)
    return ""


def _isobmff_boxes(path: Path) -> list[bytes] | None:
    """The bytes of every top-level box except mdat, or None when this is not ISO-BMFF."""
    out: list[bytes] = []
    size_total = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            header = f.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            head = 8
            if size == 1 and len(header) == 16:
                size, head = struct.unpack(">Q", header[8:16])[0], 16
            elif size == 0:
                size = size_total - pos
            if pos == 0 and kind not in (b"ftyp", b"moov", b"free", b"wide", b"mdat", b"skip"):
                return None
            if size < head:
                break  # damaged box table: what was read is what there is
            if kind != b"mdat" and size <= MAX_BOX_BYTES:
                f.seek(pos)
                out.append(f.read(size))
            pos += size
    return out


def _xmp_packets(path: Path) -> list[str]:
    try:
        boxes = _isobmff_boxes(path)
        if boxes is None:
            with open(path, "rb") as f:
                boxes = [f.read(XMP_SCAN_BYTES)]
    except OSError:
        return []
    return [m.group(0).decode("utf-8", "replace") for b in boxes for m in _XMP.finditer(b)]


def _aigc_value(xmp: str) -> str:
    import html

    for pattern in (_TC260_ELEMENT, _TC260_ATTRIBUTE):
        match = pattern.search(xmp)
        if match:
            return html.unescape(match.group(2).strip("\"'"))
    return ""


def _declares_ai(aigc: str) -> bool:
    """An AIGC label whose Label is 1, 2 or 3 (is, possibly, suspected AI-generated)."""
    try:
        value = json.loads(aigc)
    except ValueError:
        return bool(aigc)  # present but not JSON: a label, malformed; reported as given
    label = value.get("Label") if isinstance(value, dict) else None
    return str(label).strip() in {"1", "2", "3"}


def read_labels(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The AI-generation labels of one video (LABEL_COLUMNS).

    ``c2pa``: '' (no manifest) or its validation state; ``c2pa_ai``: a C2PA action declares
    an AI source type; ``aigc_label``: the GB 45438 implicit label as found (JSON text);
    ``iptc_source_type``: the XMP digital source type; ``ai_declared``: any of them declares
    (possible) AI generation. Evidence is only read.
    """
    path = Path(path)
    c2pa_state, c2pa_ai = _c2pa(path)
    aigc = _metadata_tag(path)
    iptc = ""
    for packet in _xmp_packets(path):
        aigc = aigc or _aigc_value(packet)
        match = _IPTC_SOURCE.search(packet)
        if match and not iptc:
            iptc = match.group(1).strip()
    ai_declared = (
        c2pa_ai
        or (bool(aigc) and _declares_ai(aigc))
        or iptc.rsplit("/", 1)[-1] in AI_SOURCE_TYPES
    )
    return {
        "c2pa": c2pa_state,
        "c2pa_ai": bool(c2pa_ai),
        "aigc_label": aigc,
        "iptc_source_type": iptc,
        "ai_declared": bool(ai_declared),
    }
