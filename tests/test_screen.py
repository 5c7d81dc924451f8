"""likeness screen: a catalogue of real clips against a watchlist of real people (issue 10).

The watchlists are built in tmp folders from symlinks to the shared test data; nothing is
copied into the project. Faces tables come from (and go to) the cache shared with analyze.
"""

from __future__ import annotations

import csv
import json
import os
import re
import struct
from pathlib import Path

import av
import pandas as pd
import pytest

from casedata import ELON_REFERENCE, LFW, MARK_REFERENCE, SWAP, TESTDATA
from likeness import analysis
from likeness.cli import main
from likeness.errors import CaseError
from likeness.screen import default_params, screen_catalogue
from likeness.screen import gallery as gal
from likeness.screen.labels import read_labels
from likeness.screen.videos import list_videos

FR = TESTDATA / "face_recognition"
ELON_PHOTOS = [ELON_REFERENCE, FR / "svm_people_dataset_branch/examples/face_recognition_svm_proba"
               "/people_dataset/test/test_unknown_elon_musk.jpg"]
OBAMA_PHOTOS = [FR / "examples/obama.jpg", FR / "examples/obama2.jpg",
                FR / "tests/test_images/obama3.jpg", FR / "examples/knn_examples/test/obama1.jpg"]
DEV = TESTDATA / "deepfacelive/series_keanu_dev"
HAMILTON = "face_recognition/examples/short_hamilton_clip.mp4"


def build_watchlist(folder: Path, n_other_lfw: int) -> Path:
    """Elon Musk, Mark Zuckerberg, Barack Obama (photos outside LFW: LFW's subset has no
    Obama), Keanu Reeves (LFW) and every third other LFW identity, up to ``n_other_lfw``."""
    folder.mkdir(parents=True)
    for person, photos in (("Elon_Musk", ELON_PHOTOS), ("Mark_Zuckerberg", [MARK_REFERENCE]),
                           ("Barack_Obama", OBAMA_PHOTOS)):
        (folder / person).mkdir()
        for photo in photos:
            (folder / person / photo.name).symlink_to(photo)
    (folder / "Keanu_Reeves").symlink_to(LFW / "Keanu_Reeves")
    others = sorted(p.name for p in LFW.iterdir() if p.is_dir() and p.name != "Keanu_Reeves")
    for name in others[::3][:n_other_lfw]:
        (folder / name).symlink_to(LFW / name)
    return folder


def hits_by_video(out: Path) -> dict[str, set[str]]:
    hits = pd.read_csv(out / "hits.csv")
    return {v: set(g["person"]) for v, g in hits.groupby("video")}


@pytest.fixture(scope="session")
def full_screening(tmp_path_factory):
    """Every clip of the test data against 54 watchlisted people, population = other LFW."""
    root = tmp_path_factory.mktemp("screen-full")
    watchlist = build_watchlist(root / "watchlist", 50)
    out = root / "out"
    summary = screen_catalogue(watchlist, TESTDATA, out, population=LFW, progress=False)
    return watchlist, out, summary


@pytest.fixture(scope="session")
def small_watchlist(tmp_path_factory) -> Path:
    return build_watchlist(tmp_path_factory.mktemp("screen-small") / "watchlist", 0)


@pytest.mark.slow
def test_screening_acceptance(full_screening):
    _, out, summary = full_screening
    assert len(summary["persons"]) == 54
    found = hits_by_video(out)
    truth = pd.read_csv(DEV / "truth.tsv", sep="\t")
    keanu = {f"deepfacelive/series_keanu_dev/footage/{e}.mp4"
             for e in truth.loc[truth["claimant_swap"] == "yes", "episode"]}
    assert len(keanu) == 3
    expected = {"sber-swap/derived/elon.mp4": {"Elon_Musk"},
                "sber-swap/derived/mark.mp4": {"Mark_Zuckerberg"},
                **{v: {"Keanu_Reeves"} for v in keanu}}
    for video, persons in expected.items():
        assert found.get(video) == persons, (video, found.get(video))
    # Nobody else anywhere (the Hamilton clip may only show Obama).
    others = {v: p for v, p in found.items() if v not in expected}
    assert set(others) <= {HAMILTON}, others
    assert others.get(HAMILTON, set()) <= {"Barack_Obama"}

    videos = pd.read_csv(out / "videos.csv", keep_default_na=False)
    assert len(videos) == len(list_videos(TESTDATA))
    assert set(videos["status"]) == {"ok"}
    assert (videos["video_sha256"].str.len() == 64).all()
    flagged = videos[videos["n_hits"] > 0]
    assert set(expected) <= set(flagged["video"])
    assert flagged["hit_without_ai_label"].astype(str).eq("True").all()  # none carries a label

    hits = pd.read_parquet(out / "hits.parquet")
    assert list(hits.columns) == ["video", "video_sha256", "track_id", "person", "start_s",
                                  "end_s", "screen_seconds", "log10_lr", "lineup_rank",
                                  "lineup_n", "thumbnail"]
    screening = json.loads((out / "screening.json").read_text("utf-8"))
    from likeness import faces, inference

    ran_in = inference.runtime_name(faces.resolve_device(screening["parameters"]["analysis"]
                                                         ["device"]))
    assert screening["inference"]["runtime"] == ran_in  # as analyze runs them (OpenVINO on a CPU)
    rule = screening["flag_rule"]
    assert rule["t_W_used"] == rule["t_W"] == screening["parameters"]["flag_log10_lr"]
    assert (hits["log10_lr"] >= rule["t_W"]).all() and (hits["lineup_rank"] == 1).all()
    population = pd.read_csv(out / "population.csv")
    n_population = population.loc[population["status"] == "ok", "identity"].nunique()
    assert (hits["lineup_n"] == 54 + n_population).all()  # the watchlist plus the population
    for thumb in hits["thumbnail"]:
        assert (out / thumb).stat().st_size > 0

    page = (out / "summary.html").read_text("utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).exists(), src
    assert "Keanu_Reeves" in page and "elon.mp4" in page

    assert screening["gallery"] == "exact"
    for calibration in screening["calibration"].values():
        assert calibration["normalisation"]["rule"].startswith("AS-norm")  # analyze's method
        rates = calibration["validation_flag_rates"]  # per comparison, at t_W
        assert rates["different_source_flagged"] < 0.01 and rates["same_source_flagged"] > 0.6


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="Obama's audience face (track 9 from 7.2 s, 10 faces "
                   "of about 72x108 px turned about 60 degrees away and up, mean quality 0.04) "
                   "scores 0.38 raw against his 4 frontal references (no Obama photo of the test "
                   "data scores above 0.44): AS-norm 3.2, log10 LR 0.61, lineup rank 2 "
                   "(Mohammad_Khatami above him); the flag needs rank 1 and log10 LR >= 2.35. "
                   "A pose-robust embedder is needed; none with its weights installs here")
def test_obama_flagged_in_hamilton_audience_shot(full_screening):
    _, out, _ = full_screening
    hits = pd.read_csv(out / "hits.csv")
    obama = hits[(hits["video"] == HAMILTON) & (hits["person"] == "Barack_Obama")]
    assert len(obama) and (obama["start_s"] >= 7.0).all()  # the audience shot starts at 7.2 s


@pytest.mark.slow
def test_index_finds_the_same_best_person_as_exact_search(full_screening):
    _, out, _ = full_screening
    table = pd.read_csv(out / "watchlist.csv")
    usable = table[table["status"] == "ok"]
    from likeness.embeddings import embed_photos

    photos = embed_photos(usable["path"].tolist(), selection="dominant", progress=False)
    photos.insert(0, "identity", usable["identity"].to_numpy())
    exact = gal.build_gallery(photos, use_index=False, search_k=64)
    index = gal.build_gallery(photos, use_index=True, search_k=64)
    assert index.uses_index and not exact.uses_index
    n_tracks = 0
    for path in sorted((out / "videos").glob("*.json")):
        faces_table = pd.read_parquet(json.loads(path.read_text())["faces_table"])
        a = gal.candidates(exact, faces_table, top_k=3, n_candidates=3)
        b = gal.candidates(index, faces_table, top_k=3, n_candidates=3)
        best_a = a[a["gallery_rank"] == 1].reset_index(drop=True)
        best_b = b[b["gallery_rank"] == 1].reset_index(drop=True)
        pd.testing.assert_frame_equal(best_a, best_b)
        pd.testing.assert_frame_equal(a, b)  # the whole top 3, scores included
        n_tracks += len(best_a)
    assert n_tracks > 50


def _three_clips(folder: Path) -> Path:
    clips = folder / "clips.csv"
    clips.write_text("path\n" + "".join(f"{SWAP / 'derived' / n}.mp4\n"
                                         for n in ("elon", "mark", "orig")))
    return clips


def test_index_gallery_gives_the_same_hits(tmp_path, small_watchlist):
    """The FAISS gallery (forced by index_above_persons=0) gives the exact gallery's hits.csv
    and scores.csv byte for byte."""
    clips = _three_clips(tmp_path)
    exact = screen_catalogue(small_watchlist, clips, tmp_path / "a", population=LFW,
                             progress=False)
    assert set(exact["hits"]["person"]) == {"Elon_Musk", "Mark_Zuckerberg"}
    indexed = screen_catalogue(small_watchlist, clips, tmp_path / "c", population=LFW,
                               params=default_params(index_above_persons=0), progress=False)
    assert exact["gallery"] == "exact" and indexed["gallery"] == "faiss-hnsw"
    for name in ("hits.csv", "scores.csv", "videos.csv"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_ray_gives_byte_identical_hits(tmp_path, small_watchlist):
    """A local Ray cluster of 2 workers (started and stopped here) gives the in-process run's
    hits.csv byte for byte, on three short clips."""
    clips = _three_clips(tmp_path)
    screen_catalogue(small_watchlist, clips, tmp_path / "a", population=LFW, progress=False)
    on_ray = screen_catalogue(small_watchlist, clips, tmp_path / "b", population=LFW,
                              ray="local", workers=2, progress=False)
    import ray

    assert not ray.is_initialized()
    assert set(on_ray["hits"]["person"]) == {"Elon_Musk", "Mark_Zuckerberg"}
    for name in ("hits.csv", "videos.csv"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_corrupt_video_is_reported_and_the_rest_complete(tmp_path, small_watchlist, capsys):
    """A file of garbage named .mp4 and a truncated copy of a clip are recorded; the others
    are screened; a rerun skips every finished video; the exit status says incomplete."""
    folder = tmp_path / "catalogue"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    for name in ("elon", "orig"):
        (folder / f"{name}.mp4").symlink_to(SWAP / "derived" / f"{name}.mp4")
    out = tmp_path / "out"
    argv = ["screen", "--watchlist", str(small_watchlist), "--videos", str(folder), "--out",
            str(out), "--population", str(LFW), "--quiet"]
    assert main(argv) == 3
    videos = pd.read_csv(out / "videos.csv", keep_default_na=False).set_index("video")
    assert videos.loc["broken.mp4", "status"] == "failed"
    assert "broken.mp4" in videos.loc["broken.mp4", "message"]
    assert videos.loc["elon.mp4", "status"] == "ok" and videos.loc["orig.mp4", "status"] == "ok"
    assert videos.loc["elon.mp4", "best_hits"].startswith("Elon_Musk")
    assert "broken.mp4" in capsys.readouterr().out

    results = {p: p.stat().st_mtime_ns for p in (out / "videos").glob("*.json")}
    before = (out / "hits.csv").read_bytes()
    assert main(argv) == 3
    ok_files = [p for p in results if "broken" not in p.name]
    assert all(p.stat().st_mtime_ns == results[p] for p in ok_files)  # skipped, not redone
    assert (out / "hits.csv").read_bytes() == before


def test_faces_tables_are_shared_with_analyze(tmp_path, small_watchlist):
    """The faces table screening computes is the one analyze computes for the same footage, bit
    for bit (same detector, embedder and runtime, as the cache key says), and it is shared
    through the cache: a second screening reads it from there."""
    from likeness import faces, inference
    from likeness.case import Episode, analysis_params
    from likeness.screen.worker import _screen_case

    clips = str(SWAP / "derived" / "m*.mp4")  # mark.mp4
    screen_catalogue(small_watchlist, clips, tmp_path / "a", population=LFW, reuse_faces=False,
                     progress=False)
    computed = json.loads(next((tmp_path / "a" / "videos").glob("*.json")).read_text())
    case = _screen_case(analysis_params(None, "defaults"))
    cached = analysis.faces_cache_path(case, computed["video_sha256"])
    assert Path(computed["faces_table"]).read_bytes() == cached.read_bytes()
    device = faces.resolve_device(case.analysis.device)
    assert computed["runtime"] == inference.runtime_name(device)

    detector = faces.load_detector(str(device), case.analysis.min_face_size)
    model = inference.load_embedder(case.analysis.model, str(device))
    analysis.analyze_episode(Episode("mark", SWAP / "derived" / "mark.mp4"), case,
                             tmp_path / "run", detector, model, progress=False)
    by_analyze = pd.read_parquet(analysis.faces_path(tmp_path / "run", "mark"))
    by_screen = pd.read_parquet(cached)
    assert len(by_analyze) == len(by_screen) > 0
    scalars = ["frame_index", "box_x1", "box_y1", "box_x2", "box_y2", "prob", "track_id"]
    pd.testing.assert_frame_equal(by_analyze[scalars], by_screen[scalars])
    for column in ("landmarks", "embedding"):
        assert by_analyze[column].map(list).tolist() == by_screen[column].map(list).tolist(), (
            column)

    screen_catalogue(small_watchlist, clips, tmp_path / "b", population=LFW, progress=False)
    reused = json.loads(next((tmp_path / "b" / "videos").glob("*.json")).read_text())
    assert reused["faces_table"] == str(cached)


def _mp4_with_metadata(src: Path, dest: Path, tags: dict[str, str]) -> None:
    """Remux a real clip, adding container metadata tags (as MP4 'mdta' keys)."""
    with av.open(str(src)) as inp, av.open(str(dest), "w",
                                            options={"movflags": "use_metadata_tags"}) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        out.metadata.update(tags)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)


XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def test_labels_read_gb45438_and_xmp(tmp_path):
    clip = SWAP / "derived" / "elon.mp4"
    plain = read_labels(clip)
    assert plain == {"c2pa": "", "c2pa_ai": False, "aigc_label": "", "iptc_source_type": "",
                     "ai_declared": False}

    label = json.dumps({"Label": "1", "ContentProducer": "producer-001", "ProduceID": "A1",
                        "ReservedCode1": "", "ContentPropagator": "", "PropagateID": "",
                        "ReservedCode2": ""})
    tagged = tmp_path / "tagged.mp4"
    _mp4_with_metadata(clip, tagged, {"AIGC": label})
    found = read_labels(tagged)
    assert json.loads(found["aigc_label"])["ContentProducer"] == "producer-001"
    assert found["ai_declared"]

    # An XMP packet in a top-level uuid box (after mdat) with the TC260 property and the IPTC
    # digital source type.
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:TC260="http://www.tc260.org.cn/ns/AIGC/'
           b'1.0/" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
           b'<TC260:AIGC>{&quot;Label&quot;: &quot;2&quot;}</TC260:AIGC>'
           b'<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/'
           b'trainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')
    xmp_file = tmp_path / "xmp.mp4"
    box = XMP_UUID + xmp
    xmp_file.write_bytes(clip.read_bytes() + struct.pack(">I4s", 8 + len(box), b"uuid") + box)
    found = read_labels(xmp_file)
    assert json.loads(found["aigc_label"]) == {"Label": "2"}
    assert found["iptc_source_type"].endswith("trainedAlgorithmicMedia")
    assert found["ai_declared"]


def test_list_videos_folder_glob_and_manifest(tmp_path):
    by_dir = list_videos(SWAP / "derived")
    assert by_dir["video"].tolist() == ["elon.mp4", "khabenskii.mp4", "mark.mp4", "orig.mp4"]
    by_glob = list_videos(str(SWAP / "**" / "d*.mp4"))
    assert by_glob["video"].tolist() == ["examples/videos/dance.mp4",
                                         "examples/videos/dirtydancing.mp4"]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "path"])
        writer.writerow(["ep1", str(SWAP / "derived/elon.mp4")])
        writer.writerow(["ep2", "../x.mp4"])
    assert list_videos(manifest)["video"].tolist() == ["ep1", "ep2"]
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(CaseError, match=r"bad\.csv: no 'path' column"):
        list_videos(tmp_path / "bad.csv")
    with pytest.raises(CaseError, match="not a folder, a glob pattern or a manifest"):
        list_videos(tmp_path / "missing")


@pytest.mark.slow
def test_flag_rule_figures_reproduce_from_the_watchlist_simulation(tmp_path):
    """The figures screening.json declares for its flag rule come out of the LFW watchlist
    simulation (benchmarks/watchlist.py) as run now."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import watchlist
    from likeness.screen.worker import FLAG_RULE

    result_file = tmp_path / "watchlist.json"
    assert watchlist.main(["--alpha", str(FLAG_RULE["alpha"]), "--json", str(result_file)]) == 0
    result = json.loads(result_file.read_text())
    assert result["t_W"] == FLAG_RULE["t_W"] == default_params().flag_log10_lr
    declared = FLAG_RULE["validation"]
    assert result["n_probes"] == {"on": declared["n_probes_on_watchlist"],
                                  "off": declared["n_probes_not_on_watchlist"]}
    at = result["at_t_W"]
    assert at["false_flag_rate_off"] == declared["at_t_W"]["false_flag_rate"] <= FLAG_RULE["alpha"]
    assert at["hit_rate_on"] == declared["at_t_W"]["hit_rate"]
