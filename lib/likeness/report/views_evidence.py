"""The tables the notebooks display about the case, its evidence, faces, models, population,
calibration and validation (each returns a DataFrame read from the run folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from likeness import faces_table
from likeness.case import Case, load_case, override_analysis
from likeness.errors import ReportError
from likeness.intake import load_intake
from likeness.report.manifest import models_record
from likeness.report.render import format_value, show_markdown, show_table


def open_run(
    case_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    model: str,
    sample_fps: float | None,
    operating_point: float,
    seed: int,
) -> Case:
    """The case a notebook presents, checked against the run folder it reads.

    The notebook's parameters override the case's analysis parameters; the run folder must
    exist, hold an analysis (``analysis.json``) and have been made with exactly these
    parameters, so a notebook never shows results of other settings than it states.
    """
    overrides = {
        "model": model,
        "sample_fps": sample_fps,
        "operating_point_log10_lr": operating_point,
        "seed": seed,
    }
    case = override_analysis(load_case(case_path), overrides)
    run = Path(run_dir).expanduser().resolve()
    if not run.is_dir():
        raise ReportError(
            f"run folder {run} does not exist: run `likeness analyze {case.case_file} --out "
            f"{run}` first (or `likeness report`, which analyses and runs every notebook)"
        )
    record_path = run / "analysis.json"
    if not record_path.is_file():
        raise ReportError(f"{record_path}: no analysis in this run folder; run `likeness analyze`")
    recorded = json.loads(record_path.read_text("utf-8"))
    if recorded.get("case_id") != case.case_id:
        raise ReportError(
            f"{record_path}: the run folder belongs to case '{recorded.get('case_id')}', "
            f"not '{case.case_id}' ({case.case_file})"
        )
    wanted = case.analysis.as_dict()
    differ = [
        f"{k}={recorded['parameters'].get(k)!r} (notebook: {v!r})"
        for k, v in wanted.items()
        if recorded.get("parameters", {}).get(k) != v
    ]
    if differ:
        raise ReportError(
            f"{record_path}: the run folder was analysed with other parameters: "
            + ", ".join(differ) + "; set the notebook's parameters to match or use another run"
        )
    return case


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not produce it")
    return json.loads(path.read_text("utf-8"))


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not produce it")
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs)


def case_table(case: Case) -> pd.DataFrame:
    """The case at a glance: id, title, claimant, footage, references, population."""
    rows = [
        ("case id", case.case_id),
        ("title", case.title),
        ("case file", str(case.case_file)),
        ("claimant", case.claimant_name),
        ("reference photos", f"{len(case.reference_paths)}"),
        ("episodes (broadcast order)", ", ".join(e.id for e in case.episodes)),
        ("population", str(case.population_root) if case.population_root else "none"),
        ("excluded from the population", ", ".join(case.population_exclude) or "none"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def parameters_table(case: Case) -> pd.DataFrame:
    """The declared analysis parameters with their meaning."""
    meaning = {
        "sample_fps": "frames analysed per second of footage (empty: every frame)",
        "model": "face embedding model",
        "device": "compute device ('auto': GPU when present)",
        "detect_batch_size": "frames per detector call",
        "embed_batch_size": "face crops per embedding call",
        "min_face_size": "smallest face searched for, in pixels",
        "min_detection_prob": "detections below this probability are not faces",
        "top_k": "a face's score: mean of its k best similarities to the photos of a person",
        "operating_point_log10_lr": "screen-time operating point: the log10 LR above which a "
        "face counts toward the claimant's screen time; it decides nothing else",
        "bootstrap_samples": "bootstrap replicates of the 95% intervals",
        "seed": "seed of every random choice (population split, bootstrap)",
        "max_photos_per_identity": "population photos used per identity",
    }
    params = case.analysis.as_dict()
    return pd.DataFrame(
        [(k, "every frame" if v is None else str(v), meaning.get(k, "")) for k, v in
         params.items()],
        columns=["parameter", "value", "meaning"],
    )


def intake_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run folder's ``intake.json`` (evidence hashes and video probes)."""
    return load_intake(Path(run_dir))


def evidence_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per evidence file: role, id, file name, size and SHA-256 at intake."""
    rows = [
        {
            "role": e["role"],
            "id": e["id"],
            "file": Path(e["path"]).name,
            "bytes": int(e.get("size_bytes") or 0),
            "SHA-256 at intake": e["sha256"],
        }
        for e in intake_record(run_dir)["evidence"]
    ]
    return pd.DataFrame(rows)


def evidence_folders(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The folders the evidence files lie in (the evidence table shows file names only)."""
    evidence = intake_record(run_dir)["evidence"]
    rows = [(e["role"], e["id"], str(Path(e["path"]).parent)) for e in evidence]
    return pd.DataFrame(rows, columns=["role", "id", "folder"])


def footage_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per episode with what the video's probe says."""
    rows = []
    for e in intake_record(run_dir)["evidence"]:
        if e["role"] != "footage":
            continue
        p = e.get("probe") or {}
        rows.append({
            "episode": e["id"],
            "codec": p.get("codec", "unreadable"),
            "width x height": f"{p.get('width', '?')} x {p.get('height', '?')}",
            "rotation": p.get("rotation"),
            "frame rate": p.get("frame_rate"),
            "VFR": bool(p.get("variable_frame_rate", False)),
            "duration s": p.get("duration_s"),
            "frames": p.get("frame_count"),
            "audio": bool(p.get("has_audio", False)),
            "problem": e.get("probe_error", ""),
        })
    return pd.DataFrame(rows)


def references_image_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The reference photos' format, mode and size from intake."""
    rows = []
    for e in intake_record(run_dir)["evidence"]:
        if e["role"] == "reference":
            img = e.get("image") or {}
            rows.append({
                "photo": e["id"],
                "format": img.get("format", ""),
                "mode": img.get("mode", ""),
                "width x height": f"{img.get('width', '?')} x {img.get('height', '?')}",
                "problem": img.get("error", ""),
            })
    return pd.DataFrame(rows)


def show_warnings(run_dir: str | os.PathLike[str], caption: str = "Recorded warnings"):
    """The recorded warnings as a table, or a sentence saying there were none."""
    table = warnings_table(run_dir)
    if table.empty:
        return show_markdown("*No warnings were recorded.*")
    return show_table(table, caption)


def warnings_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The run's recorded warnings (``warnings.csv``), without repeats, in recorded order."""
    path = Path(run_dir) / "warnings.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["source", "message"])
    df = pd.read_csv(path, keep_default_na=False)
    return df[["source", "message"]].drop_duplicates().reset_index(drop=True)


def read_faces(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """The faces table of one episode (without the embeddings)."""
    try:
        return faces_table.read_faces(Path(run_dir), episode, embeddings=False)
    except FileNotFoundError as exc:
        raise ReportError(
            f"{faces_table.faces_path(Path(run_dir), episode)} does not exist: "
            "the episode was not analysed"
        ) from exc


def faces_summary_table(case: Case, run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Per episode: frames analysed, faces, tracks, and the faces' median size, sharpness,
    pose and quality, with the episode's decoding status."""
    run_dir = Path(run_dir)
    statuses = read_json(run_dir / "episode_status.json")
    rows = []
    for episode in case.episodes:
        status = statuses.get(episode.id, {})
        row: dict[str, Any] = {
            "episode": episode.id,
            "frames analysed": int(status.get("n_frames", 0)),
            "faces": int(status.get("n_faces", 0)),
            "status": status.get("status", "not analysed"),
        }
        faces_file = faces_table.faces_path(Path(run_dir), episode.id)
        if faces_file.is_file():
            f = read_faces(run_dir, episode.id)
            row.update({
                "frames with a face": int(f["frame_index"].nunique()),
                "tracks": int(f["track_id"].nunique()),
                "median face px": float(f["face_px"].median()) if len(f) else float("nan"),
                "median sharpness": float(f["sharpness"].median()) if len(f) else float("nan"),
                "median |yaw| deg": float(f["yaw"].abs().median()) if len(f) else float("nan"),
                "median quality": float(f["quality"].median()) if len(f) else float("nan"),
            })
        rows.append(row)
    order = ["episode", "frames analysed", "frames with a face", "faces", "tracks",
             "median face px", "median sharpness", "median |yaw| deg", "median quality",
             "status"]
    return pd.DataFrame(rows).reindex(columns=order)


def track_summary_table(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """One row per track of an episode: time span, faces, median size and quality."""
    f = read_faces(run_dir, episode)
    if f.empty:
        return pd.DataFrame(columns=["track", "from s", "to s", "faces", "median face px",
                                     "median quality"])
    g = f.groupby("track_id", sort=True)
    return pd.DataFrame({
        "track": g.size().index.astype(int),
        "from s": g["time_s"].min().to_numpy(),
        "to s": g["time_s"].max().to_numpy(),
        "faces": g.size().to_numpy(),
        "median face px": g["face_px"].median().to_numpy(),
        "median quality": g["quality"].median().to_numpy(),
    })


def photos_table(run_dir: str | os.PathLike[str], which: str = "references") -> pd.DataFrame:
    """The embedded photos (``references`` or ``population``): status, faces, quality, warning."""
    path = Path(run_dir) / f"{which}.parquet"
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not embed the {which}")
    df = pd.read_parquet(path, columns=None)
    out = pd.DataFrame({
        "photo": [Path(p).name for p in df["path"]],
        "status": df["status"],
        "faces found": df["n_faces"].fillna(0).astype(int),
        "probability": df["prob"],
        "face px": df["face_px"],
        "quality": df["quality"],
        "warning": df["warning"].fillna(""),
    })
    if "identity" in df:
        out.insert(0, "identity", df["identity"])
    return out


def population_summary_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The population in numbers: identities, photos, usable photos, photos per identity."""
    pop = photos_table(run_dir, "population")
    ok = pop[pop["status"] == "ok"]
    per_identity = ok.groupby("identity").size()
    rows = [
        ("identities listed", pop["identity"].nunique()),
        ("photos listed", len(pop)),
        ("usable photos (one face found)", len(ok)),
        ("identities with a usable photo", ok["identity"].nunique()),
        ("usable photos per identity, median", f"{per_identity.median():g}" if len(ok) else 0),
        ("usable photos per identity, min", int(per_identity.min()) if len(ok) else 0),
        ("usable photos per identity, max", int(per_identity.max()) if len(ok) else 0),
    ]
    for status, n in pop.loc[pop["status"] != "ok", "status"].value_counts().items():
        rows.append((f"photos not used: {status}", int(n)))
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["quantity", "value"])


def models_table(model_name: str) -> pd.DataFrame:
    """The model weight files the analysis used: role, name, SHA-256 measured now, and whether
    it equals the pinned one."""
    rows = []
    for m in models_record(model_name):
        pinned = m.get("pinned_sha256")
        rows.append({
            "role": m["role"],
            "model": m["name"],
            "bytes": int(m.get("bytes") or 0),
            "SHA-256": m.get("sha256") or "missing",
            "matches pin": "no pin" if pinned is None else bool(pinned == m.get("sha256")),
        })
    return pd.DataFrame(rows)


def model_provenance_table(model_name: str) -> pd.DataFrame:
    """Licence, provenance and training data of the embedding model."""
    m = models_record(model_name)[0]
    rows = [
        ("model", m["name"]),
        ("provenance", m.get("provenance") or ""),
        ("source", m.get("provenance_url") or ""),
        ("training data", m.get("training_data") or ""),
        ("licence", m.get("licence") or ""),
        ("published LFW accuracy", f"{m['published_lfw_accuracy']:.4f}"
         if m.get("published_lfw_accuracy") else "not published"),
        ("face detector", "MTCNN of facenet-pytorch (pnet, rnet, onet weights; MIT)"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def calibration_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run folder's ``calibration.json``."""
    return read_json(Path(run_dir) / "calibration.json")


def calibration_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """How the likelihood ratios were calibrated: split, data sizes, calibrator, bounds."""
    c = calibration_record(run_dir)
    cal = c.get("calibrator") or {}
    rule = c.get("score_rule") or {}
    split = c.get("split") or {}
    params = cal.get("parameters") or {}
    rows = [
        ("score of a face", f"{rule.get('similarity', '')}; {rule.get('set_score', '')}"),
        ("claimant reference photos used", c.get("n_reference_photos")),
        ("population identities (usable)", c.get("n_population_identities")),
        ("population photos (usable)", c.get("n_population_photos")),
        ("identities drawn into the calibration half", len(split.get("calibration", []))),
        ("identities drawn into the validation half", len(split.get("validation", []))),
        ("identities of the calibration half with scores", cal.get("n_identities")),
        ("same-source scores, calibration half", cal.get("n_same_source")),
        ("different-source scores, calibration half", cal.get("n_different_source")),
        ("calibrator", f"{cal.get('calibrator', 'none')} ({cal.get('library', '')})"),
    ]
    rows += [(f"  {k.replace('_', ' ')}", v) for k, v in params.items()]
    rows += [
        ("bounds", cal.get("bounder", "")),
        ("lowest reportable log10 LR", cal.get("lower_log10_lr")),
        ("highest reportable log10 LR", cal.get("upper_log10_lr")),
        ("screen-time operating point (log10 LR)", c.get("operating_point_log10_lr")),
        ("seed", c.get("seed")),
    ]
    return pd.DataFrame(
        [(k, format_value(v, 3) if v is not None else "–") for k, v in rows],
        columns=["item", "value"],
    )


def validation_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Validation of the calibrated LRs on the held-out half of the population."""
    v = calibration_record(run_dir).get("validation")
    if not v:
        return pd.DataFrame({"metric": ["validation"], "value": ["not possible (see warnings)"],
                             "meaning": [""]})
    meaning = {
        "n_identities": "identities of the validation half with scores (none used for "
        "calibration)",
        "n_same_source": "same-source comparisons of the validation half (H1 true)",
        "n_different_source": "different-source comparisons of the validation half (H2 true)",
        "eer": "equal error rate of the scores",
        "cllr": "log-likelihood-ratio cost of the LRs (0 perfect, 1 uninformative)",
        "cllr_min": "Cllr after optimal calibration (discrimination loss)",
        "cllr_cal": "Cllr - Cllr_min (calibration loss)",
        "misleading_same_source": "share of same-source comparisons with LR < 1",
        "misleading_different_source": "share of different-source comparisons with LR > 1",
        "share_at_bounds": "share of LRs at the lowest or highest reportable value",
        "min_log10_lr": "lowest log10 LR",
        "max_log10_lr": "highest log10 LR",
    }
    label = {"n_identities": "identities of the validation half with scores",
             "n_same_source": "same-source scores, validation half",
             "n_different_source": "different-source scores, validation half", "eer": "EER",
             "cllr": "Cllr", "cllr_min": "Cllr_min", "cllr_cal": "Cllr_cal",
             "misleading_same_source": "misleading, same source",
             "misleading_different_source": "misleading, different source",
             "share_at_bounds": "share at the bounds", "min_log10_lr": "lowest log10 LR",
             "max_log10_lr": "highest log10 LR"}
    rows = [(k, v[k], meaning.get(k, "")) for k in meaning if k in v]
    rows += [(k, val, "") for k, val in v.items() if k not in meaning]
    return pd.DataFrame(
        [(label.get(k, k.replace("_", " ")), format_value(val, 4), m) for k, val, m in rows],
        columns=["metric", "value", "meaning"],
    )


