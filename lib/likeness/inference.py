"""Inference runtimes: the same networks run by PyTorch, OpenVINO or ONNX Runtime on a CPU.

PyTorch is the reference. On a CPU, OpenVINO runs MTCNN's three networks 3-7x and the
embedder about 2x faster than PyTorch with results within 1e-5 of it (measured by
``benchmarks/runtimes.py``; the tests check detections and embeddings against the PyTorch path
on real photos and frames). A network is exported once to ONNX into the user cache, named by
the SHA-256 of its weights (:func:`likeness.models.state_dict_sha256`), the opset and the torch
version, and compiled in memory by the chosen runtime.

The runtime is chosen by the environment variable ``LIKENESS_INFERENCE`` (``torch``,
``openvino`` or ``onnxruntime``; default :data:`DEFAULT_CPU_RUNTIME` on a CPU). On a GPU the
networks always run in PyTorch. The runtime in use is recorded in every analysis and in the
photo-embedding cache key, so a figure says which runtime computed it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from likeness import cache, models
from likeness.errors import LikenessError

RUNTIMES = ("torch", "openvino", "onnxruntime")
DEFAULT_CPU_RUNTIME = "openvino"
RUNTIME_ENV = "LIKENESS_INFERENCE"
ONNX_OPSET = 17


class RuntimeChoiceError(LikenessError):
    """LIKENESS_INFERENCE names no known runtime."""


def runtime_name(device: torch.device | str = "cpu") -> str:
    """The runtime that runs the networks on ``device``: always 'torch' on a GPU."""
    if torch.device(device).type != "cpu":
        return "torch"
    name = os.environ.get(RUNTIME_ENV, "").strip().lower() or DEFAULT_CPU_RUNTIME
    if name not in RUNTIMES:
        raise RuntimeChoiceError(
            f"environment variable {RUNTIME_ENV}={name!r}: use one of {', '.join(RUNTIMES)}"
        )
    return name


def pin_gpu_precision() -> None:
    """Full float32 for the networks on a GPU: no TF32 in cuDNN's convolutions or in matrix
    products (PyTorch allows TF32 in convolutions by default).

    Measured on an H200 (benchmarks/gpu/embedder_precision.py and detection.py): with TF32 the
    embeddings moved up to 3.2e-4 from the CPU's, without it 2e-7; TF32 gained 5% in detection
    and nothing in embedding at batch 64. So a GPU computes what the CPU computes, to float
    rounding, and the setting is not left to whatever the process had.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class CompiledNet(torch.nn.Module):
    """A network run by OpenVINO or ONNX Runtime, called like the PyTorch module it replaces.

    It takes and returns CPU float32 tensors (a tuple when the reference returns several).
    The reference module is kept as a child, so that ``parameters()`` still tells the device
    and dtype, and the weights stay what the model's record hashes.
    """

    def __init__(self, reference: torch.nn.Module, runtime: str, run, n_outputs: int) -> None:
        super().__init__()
        self.reference = reference
        self.runtime = runtime
        self._run = run
        self._n_outputs = n_outputs

    def forward(self, x: torch.Tensor):
        outs = self._run(np.ascontiguousarray(x.detach().cpu().numpy(), np.float32))
        tensors = tuple(torch.from_numpy(np.asarray(o)) for o in outs)
        return tensors if self._n_outputs > 1 else tensors[0]


def _onnx_file(name: str, module: torch.nn.Module) -> Path:
    sha = models.state_dict_sha256(module.state_dict())
    torch_version = torch.__version__.split("+")[0]
    stem = f"{name}-{sha[:16]}-opset{ONNX_OPSET}-torch{torch_version}"
    return models.cache_dir() / "compiled" / f"{stem}.onnx"


def export_onnx(
    name: str, module: torch.nn.Module, example: torch.Tensor, dynamic: dict[int, str]
) -> Path:
    """The module exported to ONNX in the user cache (made once, atomically, with its SHA-256;
    an exported file that no longer matches it is discarded and exported again)."""
    path = _onnx_file(name, module)
    if cache.verify_entry(path):
        return path

    def export(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["x"],
                dynamic_axes={"x": dynamic},
                opset_version=ONNX_OPSET,
            )

    cache.write_entry(path, export)
    return path


def _compile(path: Path, runtime: str):
    """A function numpy input -> list of numpy outputs, running ``path`` in ``runtime``."""
    threads = torch.get_num_threads()
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise lower precision.
            # No runtime cache of shape-specialised kernels: MTCNN's R-Net/O-Net and the
            # embedder see a new batch size on almost every call, and the cache (5,000 entries
            # by default; openvinotoolkit/openvino#23316) grew the process by 300 MiB over a
            # 5-minute episode. Without it: flat memory, the same speed (1080p detection and
            # embedding, 24 frames: 9.4-10.1 s either way).
            {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
             "CPU_RUNTIME_CACHE_CAPACITY": "0"},
        )
        request = compiled.create_infer_request()
        outputs = compiled.outputs

        def run(x: np.ndarray) -> list[np.ndarray]:
            result = request.infer({0: x})
            return [np.array(result[out]) for out in outputs]

        return run
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def compile_net(
    name: str,
    module: torch.nn.Module,
    example: torch.Tensor,
    dynamic: dict[int, str],
    runtime: str,
) -> torch.nn.Module:
    """``module`` itself for 'torch', else a :class:`CompiledNet` running it in ``runtime``."""
    if runtime == "torch":
        return module
    with torch.inference_mode():
        reference_out = module.eval()(example)
    n_outputs = len(reference_out) if isinstance(reference_out, tuple) else 1
    run = _compile(export_onnx(name, module, example, dynamic), runtime)
    return CompiledNet(module, runtime, run, n_outputs)


def compile_detector(detector, runtime: str):
    """Replace MTCNN's P-Net, R-Net and O-Net by compiled ones (in place); returns it."""
    if runtime == "torch" or isinstance(detector.pnet, CompiledNet):
        return detector
    detector.pnet = compile_net(
        "mtcnn-pnet", detector.pnet, torch.zeros(2, 3, 48, 64), {0: "n", 2: "h", 3: "w"}, runtime
    )
    detector.rnet = compile_net("mtcnn-rnet", detector.rnet, torch.zeros(2, 3, 24, 24), {0: "n"},
                                runtime)
    detector.onet = compile_net("mtcnn-onet", detector.onet, torch.zeros(2, 3, 48, 48), {0: "n"},
                                runtime)
    return detector


def compile_embedder(model: torch.nn.Module, model_name: str, runtime: str) -> torch.nn.Module:
    """The FaceNet embedder (160 px crops in, 512-d out) compiled for ``runtime``; any other
    kind of embedder is returned as it is."""
    from facenet_pytorch import InceptionResnetV1

    if runtime == "torch" or not isinstance(model, InceptionResnetV1):
        return model
    return compile_net(model_name, model, torch.zeros(2, 3, 160, 160), {0: "n"}, runtime)


def load_embedder(
    name: str = models.DEFAULT_MODEL, device: str = "cpu", runtime: str | None = None
) -> torch.nn.Module:
    """:func:`likeness.models.load_embedder`, run in ``runtime`` (default :func:`runtime_name`)."""
    model = models.load_embedder(name, device)
    if not isinstance(model, torch.nn.Module):  # dlib: its own runtime
        return model
    model_device = next(model.parameters()).device
    if model_device.type == "cuda":
        pin_gpu_precision()
    return compile_embedder(model, name, runtime or runtime_name(model_device))


def runtime_of(net) -> str:
    """The runtime a loaded detector or embedder runs in."""
    net = getattr(net, "pnet", net)
    return getattr(net, "runtime", "torch")


def runtime_versions(runtime: str) -> dict[str, str]:
    """The runtime and its version, for the analysis record."""
    if runtime == "openvino":
        import openvino

        return {"runtime": runtime, "version": openvino.__version__}
    if runtime == "onnxruntime":
        import onnxruntime

        return {"runtime": runtime, "version": onnxruntime.__version__}
    return {"runtime": runtime, "version": torch.__version__}
