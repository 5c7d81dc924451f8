"""What a report depends on, hashed (the inputs record and ``manifest.json``), and ``verify``:
re-hashing a report folder against its manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from likeness import case as case_module
from likeness.case import Case, population_exclude, project_root
from likeness.errors import ReportError
from likeness.files import sha256_file, write_json_atomic
from likeness.report.layout import (
    FAILED_FILE,
    KERNEL_NAME,
    MANIFEST_FILE,
    NOTEBOOKS,
    RUNNING_FILE,
    UNHASHED,
)

# The report folder's lock and its run-folder record (written when the lock is released, after
# the manifest) are not outputs; the analysis folder's record is.
from likeness.runfolder import LOCK_FILE, OUTPUTS_FILE
from likeness.versions import package_versions, software_versions


def notebook_parameters(case: Case, analysis_dir: Path) -> dict[str, Any]:
    """The papermill parameters every notebook gets (the names of its 'parameters' cell)."""
    params = case.analysis
    return {
        "case_path": str(case.case_file),
        "run_dir": str(analysis_dir),
        "model": params.model,
        "sample_fps": params.sample_fps,
        "operating_point": params.operating_point_log10_lr,
        "seed": params.seed,
    }


def parameters_hash(case: Case) -> str:
    """SHA-256 of the case id and the effective analysis parameters (canonical JSON)."""
    payload = {"case_id": case.case_id, "analysis": case.analysis.as_dict()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_run_id(case: Case, now: dt.datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<8 hex digits of parameters_hash>`` (UTC)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{parameters_hash(case)[:8]}"


def file_record(path: Path) -> dict[str, Any]:
    """Path, size and SHA-256 of one file."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def environment_record() -> dict[str, Any]:
    """Python, platform, key package versions and the lock file's hash."""
    lock = project_root() / "requirements.lock"
    return {
        **software_versions(),
        "python_executable": sys.executable,
        "machine": platform.machine(),
        "requirements_lock_sha256": sha256_file(lock) if lock.is_file() else None,
    }


def git_record(root: Path | None = None) -> dict[str, Any]:
    """The project's git commit and whether its tree has uncommitted changes.

    Read-only (``git rev-parse``, ``git status --porcelain``); a project that is not a git
    checkout, or a git that is missing, gives commit None with the reason.
    """
    root = root or project_root()

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=normal")
    except OSError as exc:
        return {"commit": None, "dirty": None, "note": f"git not available: {exc}"}
    if status.returncode != 0:
        return {"commit": None, "dirty": None, "note": status.stderr.strip()}
    record: dict[str, Any] = {
        "commit": head.stdout.strip() if head.returncode == 0 else None,
        "dirty": bool(status.stdout.strip()),
        "changed_files": len(status.stdout.splitlines()),
    }
    if head.returncode != 0:
        record["note"] = "the repository has no commit yet"
    return record


def kernel_record(kernel_name: str = KERNEL_NAME) -> dict[str, Any]:
    """The kernelspec the notebooks run on; ReportError when it is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as exc:
        raise ReportError(
            f"Jupyter kernel '{kernel_name}' is not installed: run `make setup` (or "
            f"`.venv/bin/python -m ipykernel install --sys-prefix --name {kernel_name}`)"
        ) from exc
    return {"name": kernel_name, "argv0": spec.argv[0], "resource_dir": spec.resource_dir}


# The SHA-256 of MTCNN's weight files as shipped in the facenet-pytorch version the lock pins
# (requirements.lock): detection depends on them, so they are pinned like the face model's.
# Another facenet-pytorch version has no pin here and the report says so.
MTCNN_PINNED_SHA256 = {
    ("2.6.0", "onet"): "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
    ("2.6.0", "pnet"): "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    ("2.6.0", "rnet"): "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
}


def mtcnn_weight_files() -> list[Path]:
    """facenet-pytorch's MTCNN weight files (pnet, rnet, onet), which detection depends on."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return sorted(data.glob("*.pt"))


def population_files(case: Case) -> pd.DataFrame:
    """The population photos the analysis uses: identity, path (claimant's folder excluded)."""
    if case.population_root is None:
        return pd.DataFrame(columns=["identity", "path"])
    photos = case_module.population_photos(
        case.population_root,
        population_exclude(case),
        max_per_identity=case.analysis.max_photos_per_identity,
    )
    return photos.dropna(subset=["path"]).reset_index(drop=True)


def population_record(case: Case) -> dict[str, Any] | None:
    """Root, exclusions, counts, per-photo SHA-256 and the SHA-256 of the whole listing.

    The listing is the text ``<identity>/<file name> <sha256>`` per photo, one a line, sorted;
    its hash changes when any photo is added, removed, renamed or altered.
    """
    if case.population_root is None:
        return None
    photos = population_files(case)
    root = case.population_root
    files = {
        str(Path(p).relative_to(root)): sha256_file(Path(p)) for p in photos["path"]
    }
    listing = "".join(f"{name} {sha}\n" for name, sha in sorted(files.items()))
    return {
        "root": str(root),
        "exclude": list(population_exclude(case)),
        "max_photos_per_identity": case.analysis.max_photos_per_identity,
        "identities": int(photos["identity"].nunique()),
        "photos": len(files),
        "listing_sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
        "files": dict(sorted(files.items())),
    }


def models_record(model_name: str) -> list[dict[str, Any]]:
    """The embedding model (registry entry + measured weights hash) and MTCNN's weight files."""
    from likeness.models import model_record

    record = model_record(model_name)
    path = Path(record["weights_path"])
    entry = {
        "role": "embedding",
        "name": model_name,
        "path": str(path),
        "pinned_sha256": record.get("sha256"),
        "licence": record.get("licence"),
        "provenance": record.get("provenance"),
        "provenance_url": record.get("provenance_url"),
        "training_data": record.get("training_data"),
        "published_lfw_accuracy": record.get("published_lfw_accuracy"),
    }
    if path.is_file():
        entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    else:
        entry.update(bytes=None, sha256=None)
    rows = [entry]
    if record.get("shape_predictor_path"):  # dlib's alignment model, pinned like the weights
        predictor = Path(record["shape_predictor_path"])
        rows.append(
            {
                **entry,
                "role": "alignment",
                "name": f"{model_name} 5-point shape predictor",
                "path": str(predictor),
                "pinned_sha256": record["shape_predictor_sha256"],
                "bytes": predictor.stat().st_size if predictor.is_file() else None,
                "sha256": sha256_file(predictor) if predictor.is_file() else None,
            }
        )
    facenet_version = package_versions(["facenet-pytorch"])["facenet-pytorch"]
    for weights in mtcnn_weight_files():
        rows.append(
            {
                "role": "detection",
                "name": f"mtcnn-{weights.stem}",
                "path": str(weights),
                "licence": "MIT (facenet-pytorch)",
                "provenance": f"facenet-pytorch {facenet_version} package data",
                "pinned_sha256": MTCNN_PINNED_SHA256.get((facenet_version, weights.stem)),
                **{k: v for k, v in file_record(weights).items() if k != "path"},
            }
        )
    return rows


def notebooks_record(source_dir: Path) -> dict[str, Any]:
    """Folder and SHA-256 of each source notebook the report runs."""
    files = {}
    for name in NOTEBOOKS:
        path = Path(source_dir) / f"{name}.ipynb"
        files[name] = sha256_file(path) if path.is_file() else None
    return {"folder": str(source_dir), "sha256": files}


def collect_inputs(case: Case, *, command: str | None = None) -> dict[str, Any]:
    """Everything the report depends on, hashed: the inputs half of ``manifest.json``."""
    evidence = [
        {"role": role, "id": ident, **file_record(path)}
        for role, ident, path in case.evidence_paths()
    ]
    return {
        "case": {
            "case_id": case.case_id,
            "title": case.title,
            "claimant": case.claimant_name,
            **file_record(case.case_file),
        },
        "parameters": case.analysis.as_dict(),
        "parameters_sha256": parameters_hash(case),
        "evidence": evidence,
        "population": population_record(case),
        "models": models_record(case.analysis.model),
        "environment": environment_record(),
        "git": git_record(),
        "command": command,
    }


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def finish_manifest(
    report_dir: Path, manifest: dict[str, Any], started: float, durations: dict[str, float]
) -> None:
    manifest["finished_utc"] = utc_now()
    manifest["duration_s"] = round(time.monotonic() - started, 3)
    manifest["step_durations_s"] = {k: round(v, 3) for k, v in durations.items()}
    manifest["outputs"] = hash_outputs(report_dir)
    write_json_atomic(report_dir / MANIFEST_FILE, manifest, sort_keys=False)


def hash_outputs(report_dir: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {bytes, sha256}}`` of every file in the report folder (sorted)."""
    outputs = {}
    for path in sorted(p for p in Path(report_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(report_dir).as_posix()
        if rel in UNHASHED or rel.endswith(".tmp") or path.name == LOCK_FILE or rel == OUTPUTS_FILE:
            continue
        outputs[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return outputs


def verify_run(report_dir: str | os.PathLike[str]) -> list[str]:
    """Re-hash a report folder's inputs and outputs against its ``manifest.json``.

    Returns one human-readable line per difference (empty list: nothing changed): a report
    that is not complete, evidence / case file / population photos / model weights that are
    missing or changed, outputs that are missing, changed or were added.
    """
    report_dir = Path(report_dir).expanduser().resolve()
    manifest_path = report_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return [f"{manifest_path}: no manifest.json (not a report folder, or the build is "
                "still running or was killed)"]
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{manifest_path}: unreadable manifest: {exc}"]
    problems: list[str] = []
    if manifest.get("status") != "complete":
        problems.append(
            f"report status is '{manifest.get('status')}', not 'complete'"
            + (f": {manifest['error']}" if manifest.get("error") else "")
        )
    for marker in (RUNNING_FILE, FAILED_FILE):
        if (report_dir / marker).exists():
            problems.append(f"{marker} marker present: the build did not complete")

    def check(what: str, path: str | Path, expected: str | None) -> None:
        path = Path(path)
        if expected is None:
            return
        if not path.is_file():
            problems.append(f"{what} missing: {path}")
            return
        actual = sha256_file(path)
        if actual != expected:
            problems.append(
                f"{what} changed: {path} (sha256 {expected[:16]}… in manifest, now {actual[:16]}…)"
            )

    inputs = manifest.get("inputs") or {}
    if "case" in inputs:
        check("case file", inputs["case"]["path"], inputs["case"]["sha256"])
    for item in inputs.get("evidence", []):
        check(f"evidence ({item['role']} {item['id']})", item["path"], item["sha256"])
    population = inputs.get("population")
    if population:
        root = Path(population["root"])
        for name, sha in population["files"].items():
            check("population photo", root / name, sha)
        present = _population_now(population)
        for name in sorted(present - set(population["files"])):
            problems.append(f"population photo added: {root / name}")
    for model in inputs.get("models", []):
        check(f"model weights ({model['name']})", model["path"], model.get("sha256"))

    recorded = manifest.get("outputs") or {}
    for rel, item in recorded.items():
        check("output", report_dir / rel, item["sha256"])
    current = hash_outputs_listing(report_dir)
    for rel in sorted(current - set(recorded)):
        problems.append(f"output added: {report_dir / rel} (not in the manifest)")
    return problems


def hash_outputs_listing(report_dir: Path) -> set[str]:
    """Relative paths of the files a manifest would hash (without hashing them)."""
    return {
        p.relative_to(report_dir).as_posix()
        for p in Path(report_dir).rglob("*")
        if p.is_file() and p.relative_to(report_dir).as_posix() not in UNHASHED
        and not p.name.endswith(".tmp") and p.name != LOCK_FILE
        and p.relative_to(report_dir).as_posix() != OUTPUTS_FILE
    }


def _population_now(population: Mapping[str, Any]) -> set[str]:
    """Relative paths of the population photos the same listing rule finds today."""
    root = Path(population["root"])
    if not root.is_dir():
        return set()
    photos = case_module.population_photos(
        root, tuple(population["exclude"]), max_per_identity=population["max_photos_per_identity"]
    ).dropna(subset=["path"])
    return {str(Path(p).relative_to(root)) for p in photos["path"]}


