"""Carrying what the GPU benchmarks need to a lent machine that accepts 64 MiB per call.

The lent GPU machine (see README.md beside this file) has PyTorch but not PyAV, facenet-pytorch
or lir, cannot reach a registry, and has no test data or weights; each call to it carries at
most 64 MiB of working tree. PyAV's wheel alone is 35 MB and the pinned embedder weights are
94 MB. So:

- ``prepare`` (here, with the registry): writes ``.gpu/a`` (the cp312 wheels, PyAV as a
  tar.xz, the test clips, the LFW subset and the first byte plane of the weights) and
  ``.gpu/b`` (the other three byte planes and the weights' length and SHA-256). Each fits one
  call. The weights are cut into their four byte planes (byte i of every 4) and each plane is
  xz-compressed: the plane of exponents shrinks to a third, the others hardly.
- ``install`` (call A on the machine, carrying ``.gpu/a``): installs the wheels and PyAV into
  ``/root/keep/site`` and keeps the data and the first plane in ``/root/keep``, outside the
  working tree, so they stay while the machine stays warm (30 s between calls).
- ``join`` (call B, carrying ``.gpu/b``): joins the four planes into the weights file in
  ``$LIKENESS_CACHE/models`` and refuses it unless its SHA-256 is the pinned one, so the
  benchmarks run the real weights, byte for byte. It also installs torchcodec, carried in
  ``.gpu/b`` for ``benchmarks/torchcodec_frames.py`` only (not a likeness dependency), without
  its builds for the FFmpeg versions PyAV does not bundle.

``benchmarks/gpu/run_all.sh`` runs ``join`` and then every GPU benchmark. Add ``/.gpu/`` to
``.git/info/exclude``.

    python benchmarks/gpu/carry.py prepare   # here
    python3 benchmarks/gpu/carry.py install  # there, call A
    python3 benchmarks/gpu/carry.py join     # there, call B (run_all.sh does it)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".gpu"
KEEP = Path("/root/keep")
# The lent machine's Python and platform; the versions are those of requirements.lock.
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64"]
# What likeness imports there beyond that machine's own packages (checked on 2026-11-26).
WHEELS = ("facenet-pytorch", "lir", "pydantic", "pydantic-core", "annotated-types",
          "typing-inspection", "confidence", "defusedxml", "platformdirs")
CLIPS = ("facenet-pytorch/examples/video.mp4", "sber-swap/examples/videos/dance.mp4",
         "sber-swap/examples/images/elon_musk.jpg")
LFW_IDENTITIES = 300
# The newest torchcodec whose stated torch requirement (>= 2.11) the lent machine's torch 2.11
# meets. It runs on the FFmpeg 8 libraries bundled in PyAV's wheel (libavcodec 62), so only
# its build for FFmpeg 8 is carried.
TORCHCODEC = "torchcodec==0.16.0"
TORCHCODEC_FFMPEG = "8"
LIMIT = 60 * 2**20  # per folder, leaving room for the working tree itself


def locked(name: str) -> str:
    """``name==version`` as requirements.lock pins it."""
    wanted = name.lower().replace("_", "-")
    for line in (ROOT / "requirements.lock").read_text("utf-8").splitlines():
        pin, _, version = line.partition("==")
        if pin.strip().lower().replace("_", "-") == wanted and version:
            return f"{pin.strip()}=={version.split()[0]}"
    raise SystemExit(f"{name} is not pinned in requirements.lock")


def weight_planes(path: Path) -> list[bytes]:
    data = path.read_bytes()
    data += b"\0" * (-len(data) % 4)
    return [lzma.compress(data[i::4], preset=6) for i in range(4)]


def prepare() -> None:
    sys.path.insert(0, str(ROOT / "lib"))
    from likeness import models
    from likeness.case import testdata_root

    shutil.rmtree(CARRY, ignore_errors=True)
    a, b = CARRY / "a", CARRY / "b"
    a.mkdir(parents=True)
    b.mkdir()
    pins = [locked(n) for n in WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM,
                    "-d", str(a), *pins], check=True)
    av_dir = CARRY / "av"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM,
                    "-d", str(av_dir), locked("av")], check=True)
    wheel_as_tar_xz(next(av_dir.glob("av-*.whl")), a / "av.tar.xz")
    shutil.rmtree(av_dir)
    data = testdata_root()
    for clip in CLIPS:
        (a / "data" / clip).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data / clip, a / "data" / clip)
    lfw = data / "lfw" / "images_deepfunneled"
    for identity in sorted(p.name for p in lfw.iterdir() if p.is_dir())[:LFW_IDENTITIES]:
        photo = sorted((lfw / identity).iterdir())[0]
        (a / "data" / "lfw_subset" / identity).mkdir(parents=True)
        shutil.copy2(photo, a / "data" / "lfw_subset" / identity / photo.name)
    weights = models.verify_weights(models.DEFAULT_MODEL)
    planes = weight_planes(weights)
    (a / "plane0.xz").write_bytes(planes[0])
    for i in (1, 2, 3):
        (b / f"plane{i}.xz").write_bytes(planes[i])
    repack_torchcodec(b / "torchcodec.tar.xz")
    (b / "weights.json").write_text(json.dumps({
        "name": weights.name, "length": weights.stat().st_size,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}), "utf-8")
    for folder in (a, b):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")
        if size > LIMIT:
            raise SystemExit(f"{folder} is over {LIMIT / 2**20:.0f} MiB: carry less")


def repack_torchcodec(dest: Path) -> None:
    """torchcodec's cp312 wheel as a tar.xz, without its builds for other FFmpeg versions."""
    folder = CARRY / "torchcodec"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM,
                    "-d", str(folder), TORCHCODEC], check=True)
    other_builds = re.compile(rf"libtorchcodec_(core|custom_ops)(?!{TORCHCODEC_FFMPEG}\.)\d+\.so$")
    wheel_as_tar_xz(next(folder.glob("torchcodec-*.whl")), dest, leave_out=other_builds)
    shutil.rmtree(folder)


def wheel_as_tar_xz(wheel: Path, dest: Path, leave_out: re.Pattern | None = None) -> None:
    """A wheel's files as a tar.xz (PyAV's: 25 MB against the wheel's 35), to be
    extracted into a site folder; files whose names ``leave_out`` matches are left out."""
    with zipfile.ZipFile(wheel) as zipped, tarfile.open(dest, "w:xz") as tar:
        for info in zipped.infolist():
            if info.is_dir() or (leave_out and leave_out.search(info.filename)):
                continue  # tarfile makes the folders of the files it extracts
            entry = tarfile.TarInfo(info.filename)
            entry.size = info.file_size
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(zipped.read(info)))


def install() -> None:
    site = KEEP / "site"
    site.mkdir(parents=True, exist_ok=True)
    a = CARRY / "a"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--target", str(site), *map(str, sorted(a.glob("*.whl")))],
                   check=True)
    with tarfile.open(a / "av.tar.xz") as tar:
        tar.extractall(site, filter="tar")
    shutil.copytree(a / "data", KEEP / "data", dirs_exist_ok=True)
    shutil.copy2(a / "plane0.xz", KEEP / "plane0.xz")
    print("installed into", KEEP)


def join() -> None:
    b = CARRY / "b"
    meta = json.loads((b / "weights.json").read_text("utf-8"))
    first = KEEP / "plane0.xz"
    if not first.exists():
        raise SystemExit(f"{first} is missing: this is a fresh machine; run the install call "
                         "(carrying .gpu/a) first, then this one within 30 s")
    planes = [lzma.decompress(p.read_bytes())
              for p in (first, *(b / f"plane{i}.xz" for i in (1, 2, 3)))]
    data = bytearray(4 * len(planes[0]))
    for i, plane in enumerate(planes):
        data[i::4] = plane
    data = bytes(data[: meta["length"]])
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise SystemExit("the joined weights are not the pinned ones")
    dest = Path(os.environ["LIKENESS_CACHE"]) / "models" / meta["name"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    print("weights joined:", dest, meta["sha256"][:12])
    if (b / "torchcodec.tar.xz").exists():
        with tarfile.open(b / "torchcodec.tar.xz") as tar:
            tar.extractall(KEEP / "site", filter="tar")
        print("torchcodec installed into", KEEP / "site")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "install", "join"])
    {"prepare": prepare, "install": install, "join": join}[parser.parse_args().step]()


if __name__ == "__main__":
    main()
