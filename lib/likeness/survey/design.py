"""The design of a recognition survey, built from an analysed run folder.

Declared rules (recorded verbatim in ``design.json`` under ``rules``):

* Every episode of the run is shown. From each episode, its ``tracks_per_episode`` strongest
  tracks (highest track log10 LR, then most faces, then lowest track id) give
  ``faces_per_track`` faces each: the faces of highest quality (then earliest frame).
* An episode is *questioned* when its strongest track's log10 LR reaches the run's operating
  point (``operating_point_log10_lr`` of analysis.json), otherwise it is a *control*: the same
  questions asked about faces the analysis does not attribute to the claimant, which nets out
  guessing. When the case names ``performers`` (the original performers under a swap), the
  best-quality photo of each is a further control stimulus.
* Lineup of a stimulus: one photo of the claimant (the usable reference photo of highest
  quality, the same for every lineup) among ``k_foils`` foils: for each population identity
  its photo most similar to the questioned face (cosine of embeddings), the ``k_foils``
  identities with the most similar such photos. Foils that look like the questioned face make
  the lineup fair: a respondent who picks the claimant does so because the claimant matches,
  not because the others look nothing like the face. All lineup photos are cropped alike (the
  detected face box, a margin, square), so framing gives nothing away.
* Positions in each lineup and the order of the questions are shuffled per respondent by the
  page with a seeded generator (:func:`likeness.survey.responses.respondent_layout`); the seed
  is recorded with the response and the collector checks the shown layout against it.

``design.json`` records the options, the rules, every stimulus and photo with the SHA-256 of
its image file, the hashes of the run files it was built from, and ``design_sha256``: the
SHA-256 of the canonical JSON of everything else in it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from likeness import scores as sc
from likeness.case import IMAGE_SUFFIXES, expand_path, load_case
from likeness.faces_table import faces_path
from likeness.files import sha256_file, write_bytes_atomic, write_json_atomic
from likeness.survey import SurveyError

DESIGN_FILE = "design.json"
DESIGN_FORMAT = "likeness-survey-design/1"
STIMULI_DIR = "stimuli"
PHOTOS_DIR = "photos"
# Margin around the detected face box, as a fraction of the box's larger side: enough to show
# hair and jaw line (part of how people recognise a face) without the background.
CROP_MARGIN = 0.3
JPEG_QUALITY = 90

DEFAULT_CONSENT = (
    "This is a short study about faces. You will see pictures of faces and be asked whether "
    "you recognise the person, and to compare a face with a set of photos. It takes about five "
    "minutes. Taking part is voluntary; you may stop at any time. No name, e-mail or other "
    "personal data is asked for or recorded; your answers are stored with a random number "
    "only, and are used for an expert report in a legal case."
)
DEFAULT_INSTRUCTIONS = (
    "Answer from your own impression; do not search the internet or ask anyone. There are no "
    "right or wrong answers. If you are not sure, say so: that is a useful answer too."
)
DEFAULT_OPTIONS: dict[str, Any] = {
    "title": "A short study about faces",
    "k_foils": 5,
    "tracks_per_episode": 1,
    "faces_per_track": 1,
    "full_frame": False,
    "crop_px": 240,
    "photo_px": 160,
    "names": [],
    "confidence_levels": 5,
    "consent": DEFAULT_CONSENT,
    "instructions": DEFAULT_INSTRUCTIONS,
    "attention": {
        "question": "To show that you are reading the questions, please choose 'Purple' below.",
        "options": ["Red", "Green", "Purple", "Blue"],
        "answer": "Purple",
    },
    "submit_url": "responses",
}
RULES = [
    "every episode is shown; per episode the tracks_per_episode strongest tracks (track log10 "
    "LR, then number of faces, then track id), per track the faces_per_track faces of highest "
    "quality (then earliest frame)",
    "an episode is questioned when its strongest track's log10 LR >= the run's "
    "operating_point_log10_lr, else it is a control; performers named by the case are controls",
    "lineup = the claimant's usable reference photo of highest quality + the k_foils population "
    "identities whose photo is most similar (cosine) to the questioned face, one photo each",
    "open-recognition block first (all stimuli, shuffled), attention check in its middle, then "
    "the lineup block (all stimuli, shuffled again), lineup positions shuffled; one seed per "
    "respondent drives all shuffles (mulberry32, Fisher-Yates)",
    "a named person counts as the claimant when the answer contains one of the accepted names "
    "after normalisation (NFKD, accents and punctuation removed, case folded, spaces collapsed)",
]


def load_options(path: str | Path | None = None, names: list[str] | None = None) -> dict:
    """The survey options: the defaults, updated from a YAML file, plus names given directly."""
    options = json.loads(json.dumps(DEFAULT_OPTIONS))
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SurveyError(f"{path}: cannot read the survey options ({exc})") from exc
        if not isinstance(raw, dict):
            raise SurveyError(f"{path}: expected a mapping of survey options")
        for key, value in raw.items():
            if key not in DEFAULT_OPTIONS:
                known = ", ".join(DEFAULT_OPTIONS)
                raise SurveyError(f"{path}: unknown survey option '{key}' (known: {known})")
            options[key] = value
    options["names"] = list(options.get("names") or []) + list(names or [])
    _check_options(options, str(path or "survey options"))
    return options


def _check_options(options: dict, where: str) -> None:
    for key in ("k_foils", "tracks_per_episode", "faces_per_track", "crop_px", "photo_px",
                "confidence_levels"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SurveyError(f"{where}: {key} must be a positive whole number, got {value!r}")
    if options["confidence_levels"] < 2:
        raise SurveyError(f"{where}: confidence_levels must be at least 2")
    if not all(isinstance(n, str) and n.strip() for n in options["names"]):
        raise SurveyError(f"{where}: names must be a list of non-empty texts")
    att = options["attention"]
    if (not isinstance(att, dict) or set(att) != {"question", "options", "answer"}
            or att["answer"] not in att["options"]):
        raise SurveyError(f"{where}: attention needs question, options and an answer among them")


def canonical_json(data: Any) -> bytes:
    """The bytes a design's hash is computed over: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def design_hash(design: dict) -> str:
    """SHA-256 of the canonical JSON of a design without its own ``design_sha256``."""
    body = {k: v for k, v in design.items() if k != "design_sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _read_run_table(run_dir: Path, name: str) -> pd.DataFrame:
    path = run_dir / name
    if not path.is_file():
        raise SurveyError(f"{path}: missing: run `likeness analyze` on the case into {run_dir}")
    return pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)


def _require(df: pd.DataFrame, columns: list[str], where: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SurveyError(f"{where}: column(s) {', '.join(missing)} missing: analyse the case "
                          "again with this version of likeness")


def select_stimuli(run_dir: Path, options: dict, operating_point: float) -> pd.DataFrame:
    """The faces shown as stimuli: one row per face, with its episode's role (declared rule)."""
    tracks = _read_run_table(run_dir, "tracks.csv")
    faces = _read_run_table(run_dir, "face_scores.parquet")
    _require(tracks, ["episode", "track_id", "n_faces", "log10_lr"], run_dir / "tracks.csv")
    _require(faces, ["episode", "track_id", "frame_index", "time_s", "box_x1", "box_y1",
                     "box_x2", "box_y2", "quality", "log10_lr"], run_dir / "face_scores.parquet")
    tracks = tracks.dropna(subset=["log10_lr"]).sort_values(
        ["episode", "log10_lr", "n_faces", "track_id"], ascending=[True, False, False, True],
        kind="stable")
    rows = []
    for episode, group in tracks.groupby("episode", sort=True):
        role = "questioned" if group["log10_lr"].iloc[0] >= operating_point else "control"
        for _, track in group.head(options["tracks_per_episode"]).iterrows():
            of_track = faces[faces["episode"].eq(episode)
                             & faces["track_id"].eq(track["track_id"])]
            best = of_track.sort_values(["quality", "frame_index"], ascending=[False, True],
                                        kind="stable").head(options["faces_per_track"])
            for _, face in best.iterrows():
                rows.append({
                    "group": str(episode), "role": role, "source": "footage",
                    "episode": str(episode), "track_id": int(track["track_id"]),
                    "frame_index": int(face["frame_index"]), "time_s": float(face["time_s"]),
                    "box": [float(face[c]) for c in ("box_x1", "box_y1", "box_x2", "box_y2")],
                    "quality": float(face["quality"]), "log10_lr": float(face["log10_lr"]),
                    "track_log10_lr": float(track["log10_lr"]),
                })
    return pd.DataFrame(rows)


def square_crop(image: np.ndarray, box: list[float], size: int) -> Image.Image:
    """The face box with CROP_MARGIN around it, squared, resized to ``size``.

    The square is shifted (and if need be shrunk) to lie inside the image rather than padded:
    a filled border on some lineup photos and not on others would single them out.
    """
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    side = min(round(max(x2 - x1, y2 - y1) * (1 + 2 * CROP_MARGIN)), width, height)
    left = min(max(0, round((x1 + x2 - side) / 2)), width - side)
    top = min(max(0, round((y1 + y2 - side) / 2)), height - side)
    crop = Image.fromarray(image).crop((left, top, left + side, top + side))
    return crop.resize((size, size), Image.Resampling.LANCZOS)


def _write_jpeg(image: Image.Image, path: Path) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    data = buffer.getvalue()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _face_embedding(run_dir: Path, stim: dict) -> np.ndarray:
    path = faces_path(run_dir, stim["episode"])
    if not path.is_file():
        raise SurveyError(f"{path}: missing: the run folder is incomplete")
    faces = pd.read_parquet(path, columns=["frame_index", "track_id", "embedding"])
    match = faces[faces["frame_index"].eq(stim["frame_index"])
                  & faces["track_id"].eq(stim["track_id"])]
    if match.empty:
        raise SurveyError(f"{path}: no face of track {stim['track_id']} in frame "
                          f"{stim['frame_index']}: face_scores.parquet and faces/ disagree")
    return sc.embedding_matrix(match["embedding"].head(1))


def choose_foils(face: np.ndarray, population: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per population identity its photo most similar to ``face``; the ``k`` most similar
    identities, most similar first (ties by identity name, so the choice is reproducible)."""
    usable = sc.usable_photos(population).reset_index(drop=True)
    if usable["identity"].nunique() < k:
        raise SurveyError(f"the population has {usable['identity'].nunique()} usable identities, "
                          f"fewer than k_foils={k}")
    sims = sc.cosine_similarity(face, sc.embedding_matrix(usable["embedding"]))[0]
    usable = usable.assign(similarity=sims.astype(float))
    best = (usable.sort_values(["similarity", "identity", "path"],
                               ascending=[False, True, True], kind="stable")
            .drop_duplicates("identity"))
    return best.head(k)


def _claimant_photo(references: pd.DataFrame, where: Path) -> pd.Series:
    usable = sc.usable_photos(references)
    if usable.empty:
        raise SurveyError(f"{where}: no usable reference photo of the claimant for the lineup")
    return usable.sort_values(["quality", "path"], ascending=[False, True], kind="stable").iloc[0]


def _performer_stimuli(case_file: Path, model_name: str) -> list[tuple[dict, np.ndarray, str]]:
    """Control stimuli from the case's optional ``performers`` block: (stimulus, embedding,
    photo path) per performer with a usable photo; nothing when the case names none."""
    raw = yaml.safe_load(case_file.read_text(encoding="utf-8")) or {}
    performers = raw.get("performers") or []
    if not performers:
        return []
    from likeness.embeddings import embed_photos

    out = []
    for i, performer in enumerate(performers):
        where = f"{case_file}: performers[{i}]"
        if not isinstance(performer, dict) or "name" not in performer:
            raise SurveyError(f"{where}: expected name and references")
        refs = performer.get("references") or []
        paths: list[Path] = []
        for ref in [refs] if isinstance(refs, str) else refs:
            p = expand_path(ref, case_file.parent, where=where)
            paths += (sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
                      if p.is_dir() else [p])
        photos = sc.usable_photos(embed_photos(paths, model_name=model_name, progress=False))
        if photos.empty:
            continue
        best = photos.sort_values(["quality", "path"], ascending=[False, True],
                                  kind="stable").iloc[0]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", str(performer["name"])).strip("-").lower()
        stim = {"group": f"performer-{slug}", "role": "control", "source": "performer",
                "episode": None, "performer": str(performer["name"]),
                "box": [float(best[c]) for c in ("box_x1", "box_y1", "box_x2", "box_y2")],
                "quality": float(best["quality"]), "photo_sha256": str(best["sha256"])}
        out.append((stim, sc.embedding_matrix(best[["embedding"]]), str(best["path"])))
    return out


def design_survey(case_path: str | Path, run_dir: str | Path, out_dir: str | Path,
                  options: dict | None = None) -> dict:
    """Build the survey of a case from its analysed run folder into ``out_dir``.

    Writes ``stimuli/*.jpg``, ``photos/*.jpg``, ``design.json`` and ``survey.html`` (the page,
    see :mod:`likeness.survey.page`); returns the design. Evidence is only read.
    """
    from likeness.footage import read_frames
    from likeness.photo_file import read_rgb
    from likeness.survey.page import write_page

    options = options or load_options()
    _check_options(options, "survey options")
    case = load_case(case_path)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    analysis_file = run_dir / "analysis.json"
    if not analysis_file.is_file():
        raise SurveyError(f"{analysis_file}: missing: run `likeness analyze` first")
    analysis = json.loads(analysis_file.read_text(encoding="utf-8"))
    if analysis.get("case_id") != case.case_id:
        raise SurveyError(f"{run_dir}: analysed case '{analysis.get('case_id')}', not "
                          f"'{case.case_id}': give the run folder of this case")
    params = analysis.get("parameters", {})
    operating_point = float(params.get("operating_point_log10_lr", 1.0))
    population = _read_run_table(run_dir, "population.parquet")
    references = _read_run_table(run_dir, "references.parquet")
    footage = {ep.id: ep.path for ep in case.episodes}

    chosen = select_stimuli(run_dir, options, operating_point)
    items: list[tuple[dict, np.ndarray, np.ndarray | None]] = []  # stimulus, crop, frame
    for episode, group in chosen.groupby("episode", sort=True):
        frames = read_frames(footage[episode], sorted(group["frame_index"].astype(int)))
        for stim in group.to_dict("records"):
            items.append((stim, frames[stim["frame_index"]], None))
    for stim, emb, path in _performer_stimuli(case.case_file, params.get("model", "")):
        items.append((stim, read_rgb(Path(path)), emb))

    claimant = _claimant_photo(references, run_dir / "references.parquet")
    photos: dict[str, dict] = {}
    photo_ids: dict[str, str] = {}

    def photo_id(row: pd.Series, role: str) -> str:
        key = str(row["path"])
        if key not in photo_ids:
            # An opaque id (from the source photo's hash): the page's source must not tell
            # which photo is the claimant's.
            pid = f"p{hashlib.sha256(str(row['sha256']).encode()).hexdigest()[:10]}"
            photo_ids[key] = pid
            image = square_crop(read_rgb(Path(key)), [float(row[c]) for c in
                                ("box_x1", "box_y1", "box_x2", "box_y2")], options["photo_px"])
            file = f"{PHOTOS_DIR}/{pid}.jpg"
            photos[pid] = {
                "role": role, "identity": str(row.get("identity", case.claimant_name)),
                "source_path": key, "source_sha256": str(row["sha256"]), "image": file,
                "image_sha256": _write_jpeg(image, out_dir / file),
            }
        return photo_ids[key]

    claimant_id = photo_id(claimant, "claimant")
    stimuli = []
    for n, (stim, image, embedding) in enumerate(items, start=1):
        sid = f"s{n:02d}"
        file = f"{STIMULI_DIR}/{sid}.jpg"
        stim = {"id": sid, **stim, "image": file,
                "image_sha256": _write_jpeg(square_crop(image, stim["box"], options["crop_px"]),
                                            out_dir / file)}
        if options["full_frame"] and stim["source"] == "footage":
            frame = Image.fromarray(image)
            frame.thumbnail((640, 640), Image.Resampling.LANCZOS)
            stim["frame_image"] = f"{STIMULI_DIR}/{sid}-frame.jpg"
            stim["frame_image_sha256"] = _write_jpeg(frame, out_dir / stim["frame_image"])
        if embedding is None:
            embedding = _face_embedding(run_dir, stim)
        foils = choose_foils(embedding, population, options["k_foils"])
        claimant_sim = float(sc.cosine_similarity(
            embedding, sc.embedding_matrix(claimant[["embedding"]]))[0, 0])
        similarity = {claimant_id: round(claimant_sim, 6)}
        for _, foil in foils.iterrows():
            similarity[photo_id(foil, "foil")] = round(float(foil["similarity"]), 6)
        # Options in id order: the claimant's place in the list says nothing.
        stim["lineup"] = {"claimant": claimant_id, "options": sorted(similarity),
                          "similarity": similarity}
        stimuli.append(stim)

    run_files = ["analysis.json", "intake.json", "tracks.csv", "face_scores.parquet",
                 "population.parquet", "references.parquet"]
    run_files += sorted({f"faces/{s['episode']}.parquet" for s in stimuli if s["episode"]})
    design = {
        "format": DESIGN_FORMAT,
        "case_id": case.case_id,
        "case_sha256": sha256_file(case.case_file),
        "claimant": case.claimant_name,
        "accepted_names": [case.claimant_name] + [n for n in options["names"]
                                                  if n != case.claimant_name],
        "options": options,
        "rules": RULES,
        "operating_point_log10_lr": operating_point,
        "model": params.get("model"),
        "run_files": {name: sha256_file(run_dir / name) for name in run_files
                      if (run_dir / name).is_file()},
        "stimuli": stimuli,
        "photos": photos,
    }
    design["survey_id"] = f"{case.case_id}-{design_hash(design)[:12]}"
    design["design_sha256"] = design_hash(design)
    write_json_atomic(out_dir / DESIGN_FILE, design)
    write_page(design, out_dir)
    return design


def load_design(survey_dir: str | Path) -> dict:
    """Read ``design.json`` and check its hash and the hash of every image it names."""
    survey_dir = Path(survey_dir)
    path = survey_dir / DESIGN_FILE
    try:
        design = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SurveyError(f"{path}: not found: run `likeness survey design` first") from exc
    except (OSError, ValueError) as exc:
        raise SurveyError(f"{path}: not a readable design ({exc})") from exc
    if not isinstance(design, dict) or design.get("format") != DESIGN_FORMAT:
        raise SurveyError(f"{path}: not a likeness survey design ({DESIGN_FORMAT})")
    if design_hash(design) != design.get("design_sha256"):
        raise SurveyError(f"{path}: design_sha256 does not match its content: the design was "
                          "edited after it was made; make it again with `likeness survey design`")
    images = [(s["image"], s["image_sha256"]) for s in design["stimuli"]]
    images += [(s["frame_image"], s["frame_image_sha256"]) for s in design["stimuli"]
               if "frame_image" in s]
    images += [(p["image"], p["image_sha256"]) for p in design["photos"].values()]
    for file, digest in images:
        if not (survey_dir / file).is_file() or sha256_file(survey_dir / file) != digest:
            raise SurveyError(f"{survey_dir / file}: missing or changed since the design was made")
    return design
