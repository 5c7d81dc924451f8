"""Embeddings: detected faces to L2-normalised vectors, and still photos to embedded faces.

Every face, from footage or from a photo, goes through the same detector, the same crop
(:func:`likeness.face_crop.crop_faces`) and the same embedder, so that questioned faces and
reference faces are comparable. :func:`embed_faces` is the one entry for every model: the
FaceNet models embed the 160x160 crops (512-d), dlib's model aligns each face itself from the
image and the detector's box (128-d). Photos are cached by model and by the SHA-256 of the file, so
that a second case with the same population reuses its embeddings.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from likeness import cache, face_crop, faces, inference, models
from likeness.case import population_photos
from likeness.files import prefetch, sha256_file
from likeness.photo_file import read_rgb

# Part of every cache key (photos and faces tables): bump it when detection, cropping,
# embedding or the cache's format changes. 3: every entry carries its SHA-256 (likeness.cache);
# the unsealed entries of version 2 are left unused, not discarded one by one with a warning.
PHOTO_CACHE_VERSION = 3

PHOTO_COLUMNS = [
    "path",
    "sha256",
    "status",
    "warning",
    "n_faces",
    "face_index",
    "prob",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "landmarks",
    "face_px",
    "sharpness",
    "yaw",
    "pitch",
    "roll",
    "quality",
    "embedding",
]

# A photo with several faces is usable when one face is clearly the subject: for references,
# the largest face covering at least twice the area of the next one; for population photos
# (LFW centres its subject), the face nearest the image centre.
DOMINANT_AREA_RATIO = 2.0


def standardise(crops: np.ndarray) -> torch.Tensor:
    """(n, 160, 160, 3) uint8 RGB to the models' input: NCHW float, (x - 127.5) / 128."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 128.0


def embed_crops(model: torch.nn.Module, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embed uint8 crops in batches; returns (n, 512) float32 L2-normalised rows."""
    device = next(model.parameters()).device
    out = np.zeros((len(crops), 512), np.float32)
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            batch = standardise(crops[start : start + batch_size]).to(device)
            emb = torch.nn.functional.normalize(model(batch), dim=1)
            out[start : start + len(batch)] = emb.float().cpu().numpy()
    return out


def embedding_dim(model) -> int:
    """Length of the embeddings ``model`` (as :func:`likeness.models.load_embedder` gives it)
    produces: 512 for the FaceNet models, the embedder's own ``embedding_dim`` otherwise."""
    return 512 if isinstance(model, torch.nn.Module) else int(model.embedding_dim)


def embed_faces(
    model,
    images: Sequence[np.ndarray],
    dets: Sequence[faces.Detections],
    crops: Sequence[np.ndarray],
    batch_size: int = 64,
) -> np.ndarray:
    """Embed every detected face of ``images``, in order: (total faces, dim) float32.

    ``crops`` are :func:`likeness.face_crop.crop_faces` of each image's detections; FaceNet embeds
    them, an embedder with its own alignment (dlib) reads the image and the boxes instead.
    """
    if isinstance(model, torch.nn.Module):
        return embed_crops(model, np.concatenate(crops), batch_size)
    return model.embed_faces(images, [d.boxes for d in dets])


def _cache_file(model_name: str, sha256: str, detector_key: str) -> Path:
    return (
        models.cache_dir() / "embeddings" / model_name / detector_key / sha256[:2] / f"{sha256}.npz"
    )


def _detector_key(min_face_size: int, runtimes: tuple[str, str] = ("torch", "torch")) -> str:
    settings: dict = {
        "v": PHOTO_CACHE_VERSION,
        "min_face_size": min_face_size,
        "crop": [face_crop.CROP_SIZE, face_crop.CROP_MARGIN],
    }
    if runtimes != ("torch", "torch"):
        # Another runtime gives the same faces and embeddings to float rounding, not bit for
        # bit: its results are kept apart (PyTorch's keep the key they always had).
        settings["runtimes"] = list(runtimes)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# The arrays a photo's cache entry holds (see _embed_group).
CACHED_ARRAYS = ("shape", "probs", "boxes", "landmarks", "face_px", "sharpness", "embeddings")


def _save_cached_faces(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Cache one photo's faces as an ``.npz`` sealed with its SHA-256 (likeness.cache)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    cache.write_entry(path, write)


def _read_cached_faces(path: Path) -> dict[str, np.ndarray] | None:
    """One photo's cached faces, or None when there is no usable entry: a damaged, edited or
    unsealed entry, or one without the expected arrays, is discarded (with a warning) and the
    photo is embedded again."""
    data = cache.read_entry(path)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if sorted(arrays) != sorted(CACHED_ARRAYS):
            raise ValueError(f"arrays {sorted(arrays)}, expected {sorted(CACHED_ARRAYS)}")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        cache.discard(path, f"not a photo's cached faces ({exc})")
        return None
    return arrays


def _select_face(boxes: np.ndarray, shape: tuple[int, int], selection: str) -> int | None:
    """Index of the subject's face among several, or None when it is ambiguous."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-areas, kind="stable")
    if selection == "centre":
        centre = np.array([shape[1] / 2, shape[0] / 2])
        mids = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
        return int(np.argmin(np.linalg.norm(mids - centre, axis=1)))
    if areas[order[0]] >= DOMINANT_AREA_RATIO * areas[order[1]]:
        return int(order[0])
    return None


def _read_photos(
    paths: Sequence[Path], model_name: str, key: str, cache: bool
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Each photo's record (path, hash, status; its cached faces when there are) and, when it
    must be computed, its pixels. Run in a background thread: hashing and decoding overlap the
    networks."""
    for path in paths:
        rec: dict = {"path": str(path), "sha256": "", "status": "ok", "warning": ""}
        try:
            rec["sha256"] = sha256_file(path)
        except OSError as exc:
            rec.update(status="unreadable", warning=f"{path}: cannot be read ({exc.strerror})")
            yield rec, None
            continue
        if cache and (found := _read_cached_faces(_cache_file(model_name, rec["sha256"], key))):
            rec["_faces"] = found
            yield rec, None
            continue
        try:
            yield rec, read_rgb(path)
        except Exception as exc:  # ImageError and anything PIL raises on a broken file
            rec.update(status="unreadable", warning=str(exc))
            yield rec, None


def _embed_group(
    group: list[tuple[dict, np.ndarray]], detector, model: torch.nn.Module
) -> list[dict[str, np.ndarray]]:
    """Detect the faces of equally sized photos in one MTCNN call and embed all their crops in
    one embedder call; returns each photo's arrays (as cached)."""
    dets = faces.detect_batch(detector, [img for _, img in group])
    crops = [
        face_crop.crop_faces(img, d.boxes, d.landmarks)
        for (_, img), d in zip(group, dets, strict=True)
    ]
    n_faces = sum(len(d) for d in dets)
    emb = (embed_faces(model, [img for _, img in group], dets, crops) if n_faces
           else np.zeros((0, embedding_dim(model)), np.float32))
    out, offset = [], 0
    for (_, img), det, crop in zip(group, dets, crops, strict=True):
        rows = faces.face_rows(det, crop)
        out.append(
            {
                "shape": np.asarray(img.shape[:2]),
                "probs": det.probs,
                "boxes": det.boxes,
                "landmarks": det.landmarks,
                "face_px": rows["face_px"].to_numpy(),
                "sharpness": rows["sharpness"].to_numpy(),
                "embeddings": emb[offset : offset + len(det)],
            }
        )
        offset += len(det)
    return out


def embed_photos(
    paths: Sequence[Path | str],
    *,
    model_name: str = models.DEFAULT_MODEL,
    device: str = "auto",
    selection: str = "dominant",
    min_face_size: int = 20,
    min_prob: float = 0.9,
    batch_size: int = 32,
    cache: bool = True,
    progress: bool = True,
    model: torch.nn.Module | None = None,
    detector=None,
) -> pd.DataFrame:
    """Embed the subject's face of each photo: one row per photo (columns PHOTO_COLUMNS).

    status is 'ok' (embedding present), 'no_face', 'several_faces' (no clear subject) or
    'unreadable'; ``warning`` says what happened in words. Detections below ``min_prob`` are
    ignored. ``selection`` is 'dominant' (references) or 'centre' (population photos).

    Photos stream: a background thread hashes and decodes them while equally sized photos
    (LFW: all 250x250) go through MTCNN and the embedder in batches of ``batch_size``; at most
    a few batches of pixels are held at once. The networks run in the runtime of ``detector``
    and ``model`` (default: :func:`likeness.inference.runtime_name`), which is part of the
    cache key.
    """
    torch_device = faces.resolve_device(device)
    default_runtime = inference.runtime_name(torch_device)
    runtimes = (
        inference.runtime_of(detector) if detector is not None else default_runtime,
        inference.runtime_of(model) if model is not None else default_runtime,
    )
    key = _detector_key(min_face_size, runtimes)
    records: list[dict] = []
    pending: dict[tuple, list[tuple[dict, np.ndarray]]] = {}  # photos to compute, by shape
    bar = tqdm(total=len(paths), desc="photos", unit="photo", disable=not progress)

    def flush(shape: tuple) -> None:
        nonlocal detector, model
        group = pending.pop(shape)
        if detector is None:
            detector = faces.load_detector(str(torch_device), min_face_size, runtimes[0])
        if model is None:
            model = inference.load_embedder(model_name, str(torch_device), runtimes[1])
        for (rec, _), arrays in zip(group, _embed_group(group, detector, model), strict=True):
            if cache:
                _save_cached_faces(_cache_file(model_name, rec["sha256"], key), arrays)
            rec["_faces"] = arrays
        bar.update(len(group))

    for rec, image in prefetch(_read_photos(list(map(Path, paths)), model_name, key, cache), 16):
        records.append(rec)
        if image is None:
            bar.update(1)
            continue
        pending.setdefault(image.shape, []).append((rec, image))
        if len(pending[image.shape]) >= batch_size:
            flush(image.shape)
        elif sum(map(len, pending.values())) >= 2 * batch_size:
            # Photos of many sizes (references): do not hold them all; the largest group goes.
            flush(max(pending, key=lambda s: len(pending[s])))
    for shape in list(pending):
        flush(shape)
    bar.close()

    return pd.DataFrame(
        [_photo_row(rec, selection, min_prob) for rec in records], columns=PHOTO_COLUMNS
    )


def _photo_row(rec: dict, selection: str, min_prob: float) -> dict:
    row = {c: None for c in PHOTO_COLUMNS} | {k: v for k, v in rec.items() if k != "_faces"}
    found = rec.get("_faces")
    if found is None:
        row["n_faces"] = 0
        return row
    keep = found["probs"] >= min_prob
    n = int(keep.sum())
    row["n_faces"] = n
    if n == 0:
        row.update(status="no_face", warning=f"{rec['path']}: no face found")
        return row
    idx = np.flatnonzero(keep)
    choice = 0 if n == 1 else _select_face(found["boxes"][idx], tuple(found["shape"]), selection)
    if choice is None:
        row.update(
            status="several_faces",
            warning=f"{rec['path']}: {n} faces and none clearly the subject; photo not used",
        )
        return row
    i = int(idx[choice])
    if n > 1:
        which = "largest" if selection == "dominant" else "central"
        row["warning"] = f"{rec['path']}: {n} faces; used the {which} one"
    det = faces.Detections(
        found["boxes"][i : i + 1], found["probs"][i : i + 1], found["landmarks"][i : i + 1]
    )
    yaw, pitch, roll = faces.pose_degrees(det.landmarks)
    box = det.boxes[0]
    row.update(
        face_index=i,
        prob=float(det.probs[0]),
        box_x1=float(box[0]),
        box_y1=float(box[1]),
        box_x2=float(box[2]),
        box_y2=float(box[3]),
        landmarks=det.landmarks.reshape(10),
        face_px=float(found["face_px"][i]),
        sharpness=float(found["sharpness"][i]),
        yaw=float(yaw[0]),
        pitch=float(pitch[0]),
        roll=float(roll[0]),
        embedding=found["embeddings"][i],
    )
    row["quality"] = float(
        faces.face_quality(
            det.probs, found["face_px"][i : i + 1], found["sharpness"][i : i + 1], yaw, pitch
        )[0]
    )
    return row


def embed_population(
    root: Path,
    exclude: Sequence[str] = (),
    *,
    model_name: str = models.DEFAULT_MODEL,
    max_per_identity: int | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Embed a population folder (one sub-folder per identity): embed_photos plus ``identity``.

    An identity folder without photos gets one row with status 'no_photo'.
    """
    listing = population_photos(root, exclude, max_per_identity=max_per_identity)
    has_photo = listing["path"].notna()
    photos = embed_photos(
        listing.loc[has_photo, "path"].tolist(),
        model_name=model_name,
        selection="centre",
        **kwargs,
    )
    photos.insert(0, "identity", listing.loc[has_photo, "identity"].to_numpy())
    empty = listing.loc[~has_photo, ["identity"]].assign(
        status="no_photo", warning=lambda d: d["identity"] + ": folder holds no photo"
    )
    return pd.concat([photos, empty], ignore_index=True).sort_values(
        ["identity", "path"], kind="stable", na_position="last", ignore_index=True
    )
