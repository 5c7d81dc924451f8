"""How the benchmarks measure: wall time with the GPU synchronised, peak memory while a block
runs, rates, and frames downscaled to a named resolution. Shared by throughput.py,
population.py and series.py."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import psutil
import torch

RESOLUTIONS = {"1080p": 1080, "720p": 720, "540p": 540}


def resize_to(image: np.ndarray, height: int | None) -> np.ndarray:
    """Downscale to ``height`` rows keeping the aspect ratio (area filter); None: unchanged."""
    if height is None or image.shape[0] <= height:
        return image
    width = round(image.shape[1] * height / image.shape[0])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class PeakMemory:
    """Highest resident set size (and CUDA allocation) while the ``with`` block runs.

    On Linux the kernel's own high-water mark (``VmHWM``), reset when the block starts
    (``/proc/self/clear_refs``): exact, and nothing runs meanwhile. Elsewhere a thread samples
    the resident set every 10 ms, which misses shorter peaks and wakes 100 times a second.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.process = psutil.Process()
        self.start_rss = self.peak_rss = 0
        self.peak_cuda = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self.start_rss = self.peak_rss = self.process.memory_info().rss
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if not _reset_high_water_mark():
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak_rss = max(self.peak_rss, _high_water_mark())
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
        if self.device.type == "cuda":
            self.peak_cuda = torch.cuda.max_memory_allocated(self.device)

    def record(self) -> dict:
        mib = 1 << 20
        return {
            "rss_start_mib": round(self.start_rss / mib, 1),
            "rss_peak_mib": round(self.peak_rss / mib, 1),
            "cuda_peak_mib": round(self.peak_cuda / mib, 1) if self.device.type == "cuda" else None,
        }


def _reset_high_water_mark() -> bool:
    """Set the kernel's peak resident set size of this process to its current size (Linux 4.0
    and later); False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _high_water_mark()
    except (OSError, ValueError):
        return False
    return True


def _high_water_mark() -> int:
    """The kernel's peak resident set size of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise ValueError("no VmHWM in /proc/self/status")


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else float("nan")
