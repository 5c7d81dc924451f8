"""Recognition surveys (issue 11): design from the development series, the collector, the
analysis and the report section, on real data and a real HTTP server.

The browser test (30 scripted respondents in headless Chromium) is in test_survey_browser.py.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import uuid

import pytest

from likeness.survey import SurveyError
from likeness.survey.analyze import (
    analyze_survey,
    functional_size,
    names_claimant,
    newcombe_difference,
    sample_size,
    tredoux_e,
    wilson,
)
from likeness.survey.design import design_hash, load_design
from likeness.survey.report_section import survey_files, survey_markdown
from likeness.survey.responses import (
    RESPONSE_FORMAT,
    ResponseStore,
    import_files,
    respondent_layout,
    write_response_file,
)
from likeness.survey.serve import start_server
from surveydata import DEV_CASE, DEV_NAMES, design_dev_survey

ACCEPTED = ["Keanu Reeves", *DEV_NAMES]


@pytest.fixture(scope="module")
def keanu_survey(tmp_path_factory):
    """The development series analysed once, and its survey designed: (survey_dir, design)."""
    return design_dev_survey(tmp_path_factory.mktemp("survey"))


def make_response(design: dict, seed: int, *, complete: bool = True, attention: str = "Purple",
                  name: str = "Keanu Reeves", pick: str = "claimant") -> dict:
    """A response as the page makes it, for the respondent with this seed."""
    layout = respondent_layout(design, seed)
    stimuli = {s["id"]: s for s in design["stimuli"]}
    order = layout["recognition_order"] if complete else layout["recognition_order"][:2]
    lineup = layout["lineup_order"] if complete else []
    return {
        "format": RESPONSE_FORMAT, "survey_id": design["survey_id"],
        "design_sha256": design["design_sha256"], "response_id": uuid.uuid4().hex,
        "seed": seed, "consent": True, "complete": complete,
        "started_utc": "2026-11-25T10:00:00.000Z", "finished_utc": "2026-11-25T10:04:00.000Z",
        "attention": attention if complete else None, **layout,
        "recognition": [{"stimulus": s, "recognised": "yes", "name": name} for s in order],
        "lineup": [{"stimulus": s, "choice": stimuli[s]["lineup"]["claimant"] if pick ==
                    "claimant" else "none", "confidence": 4} for s in lineup],
    }


# --- design ---------------------------------------------------------------------------------

def test_design_from_the_development_series(keanu_survey):
    survey_dir, design = keanu_survey
    roles = {s["group"]: s["role"] for s in design["stimuli"]}
    # The declared rule on this run: the three swaps to the claimant's look-alike are
    # questioned (their strongest track reaches the operating point), the rest are controls.
    assert roles == {"dev01": "control", "dev02": "questioned", "dev03": "control",
                     "dev04": "questioned", "dev05": "control", "dev06": "control",
                     "dev07": "questioned"}
    claimant = {s["lineup"]["claimant"] for s in design["stimuli"]}
    assert len(claimant) == 1 and design["photos"][claimant.pop()]["role"] == "claimant"
    for s in design["stimuli"]:
        options = s["lineup"]["options"]
        assert len(options) == 6 and options == sorted(options)
        foils = [p for p in options if p != s["lineup"]["claimant"]]
        identities = [design["photos"][p]["identity"] for p in foils]
        assert len(set(identities)) == 5 and "Keanu_Reeves" not in identities
        # Fair foils: no other population identity is more similar than the least similar foil.
        assert min(s["lineup"]["similarity"][p] for p in foils) > 0.25
    assert design["design_sha256"] == design_hash(design)
    assert design["accepted_names"] == ACCEPTED
    page = (survey_dir / "survey.html").read_text(encoding="utf-8")
    # Self-contained: no URL to anywhere, and nothing that names the claimant or a role.
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page
    assert "Keanu" not in page and "claimant" not in page


def test_design_is_reproducible_and_takes_options(keanu_survey, tmp_path):
    from likeness.survey.design import design_survey, load_options

    survey_dir, design = keanu_survey
    run_dir = survey_dir.parent / "run"
    again = design_survey(DEV_CASE, run_dir, tmp_path / "again", load_options(names=DEV_NAMES))
    assert again == design
    for name in ["design.json", "survey.html"] + [s["image"] for s in design["stimuli"]]:
        assert (tmp_path / "again" / name).read_bytes() == (survey_dir / name).read_bytes()

    options = tmp_path / "options.yaml"
    options.write_text("k_foils: 3\ntracks_per_episode: 2\nfull_frame: true\n", "utf-8")
    wider = design_survey(DEV_CASE, run_dir, tmp_path / "wider", load_options(options))
    # dev01 has three tracks, dev05 one: two stimuli and one, each with a full frame.
    groups = [s["group"] for s in wider["stimuli"]]
    assert groups.count("dev01") == 2 and groups.count("dev05") == 1
    assert all(len(s["lineup"]["options"]) == 4 for s in wider["stimuli"])
    assert all((tmp_path / "wider" / s["frame_image"]).is_file() for s in wider["stimuli"])
    assert wider["design_sha256"] != design["design_sha256"]
    options.write_text("k_foil: 3\n", "utf-8")
    with pytest.raises(SurveyError, match="unknown survey option 'k_foil'"):
        load_options(options)


def test_design_refuses_changed_files(keanu_survey, tmp_path):
    survey_dir, design = keanu_survey
    copy = tmp_path / "copy"
    shutil.copytree(survey_dir, copy)
    photo = copy / next(iter(design["photos"].values()))["image"]
    photo.write_bytes(photo.read_bytes() + b"\0")
    with pytest.raises(SurveyError, match="changed since the design"):
        load_design(copy)
    edited = dict(design, options={**design["options"], "k_foils": 3})
    (copy / "design.json").write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(SurveyError, match="design_sha256 does not match"):
        load_design(copy)


def test_performers_become_control_stimuli(tmp_path):
    from likeness.survey.design import _performer_stimuli

    case_file = tmp_path / "case.yaml"
    photos = "${LIKENESS_TESTDATA}/lfw/images_deepfunneled/Adrien_Brody"
    case_file.write_text(f"performers:\n  - name: Adrien Brody\n    references: ['{photos}']\n",
                         encoding="utf-8")
    [(stimulus, embedding, path)] = _performer_stimuli(case_file, "facenet-casia-webface")
    assert stimulus["role"] == "control" and stimulus["group"] == "performer-adrien-brody"
    assert embedding.shape == (1, 512) and "Adrien_Brody" in path
    case_file.write_text("case_id: x\n", encoding="utf-8")
    assert _performer_stimuli(case_file, "facenet-casia-webface") == []


# --- statistics -----------------------------------------------------------------------------

def test_wilson_and_newcombe_match_published_values():
    lo, hi = wilson(5, 5)
    assert (round(lo, 4), hi) == (0.5655, 1.0)
    lo, hi = wilson(81, 263)  # Newcombe (1998), Table I: 0.2553 to 0.3662
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    d, lo, hi = newcombe_difference(56, 70, 48, 80)  # Newcombe (1998b), example (a)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


def test_lineup_fairness_measures():
    import numpy as np

    choices = np.array(["a", "a", "b", "c"])
    assert functional_size(choices, "a") == 2.0
    assert tredoux_e(choices) == pytest.approx(1 / (0.5**2 + 0.25**2 + 0.25**2))
    assert tredoux_e(np.array(list("abcdef") * 3)) == pytest.approx(6.0)
    assert functional_size(np.array(["b", "c"]), "a") == float("inf")
    assert sample_size(0.05) == 385 and sample_size(0.03) == 1068


@pytest.mark.parametrize("answer, expected", [
    ("Keanu Reeves", True), ("  keanu   REEVES. ", True), ("Kéanu Reevès", True),
    ("I think it's Keanu Reeves!", True), ("Киану Ривз", True), ("киану  ривз", True),
    ("基努·里维斯", True), ("基努里维斯吧", True), ("Keanu", False), ("Reeves", False),
    ("Keanu Reevesville", False), ("Tom Cruise", False), ("", False),
])
def test_names_are_matched_tolerantly(answer, expected):
    assert names_claimant(answer, ACCEPTED) is expected


# --- the collector: bad input gets a 4xx and nothing is stored ------------------------------

@pytest.fixture
def collector(keanu_survey, tmp_path):
    survey_dir, _ = keanu_survey
    server = start_server(survey_dir, tmp_path / "responses.sqlite", quiet=True)
    yield server
    server.shutdown()
    server.server_close()


def post(server, body: bytes, content_type: str = "application/json",
         length: int | None = None) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/responses")
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(body) if length is None else length))
    conn.endheaders()
    if length is None:
        conn.send(body)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


def stored_ids(server) -> list[str]:
    return [r["response_id"] for r in server.store.responses()]


def test_collector_stores_a_valid_response(collector):
    response = make_response(collector.design, 7)
    status, data = post(collector, json.dumps(response).encode())
    assert (status, data) == (201, {"stored": response["response_id"]})
    assert collector.store.responses() == [response]


def test_malformed_json_is_refused(collector):
    body = json.dumps(make_response(collector.design, 1)).encode()[:-5]
    status, data = post(collector, body)
    assert status == 400 and "not valid JSON" in data["error"]
    status, _ = post(collector, b'{"seed": NaN}')
    assert status == 400
    assert stored_ids(collector) == []


def test_unknown_stimulus_is_refused(collector):
    response = make_response(collector.design, 2)
    response["lineup"][0]["stimulus"] = "s99"
    status, data = post(collector, json.dumps(response).encode())
    assert status == 422 and data["error"] == "field 'lineup[0].stimulus': unknown stimulus id"
    response = make_response(collector.design, 2)
    response["lineup"][0]["choice"] = "p0000000000"
    status, data = post(collector, json.dumps(response).encode())
    assert status == 422 and "not a photo of this stimulus's lineup" in data["error"]
    assert stored_ids(collector) == []


def test_oversized_body_is_refused_unread(collector):
    response = make_response(collector.design, 3, name="x" * 100)
    response["padding"] = "y" * (collector.max_body + 1)
    # The server answers from the headers alone: the body is never sent, let alone read.
    status, data = post(collector, b"", length=len(json.dumps(response)))
    assert status == 413 and "at most 65536" in data["error"]
    status, _ = post(collector, json.dumps(response).encode()[: collector.max_body])
    assert status == 400  # the cut-off body that fits is not JSON
    assert stored_ids(collector) == []


@pytest.mark.parametrize("field, value", [
    ("response_id", "'; DROP TABLE responses; --"),
    ("survey_id", "x' OR '1'='1"),
    ("stimulus", "s01'); DELETE FROM responses; --"),
    ("attention", "Purple' OR 1=1 --"),
])
def test_sql_metacharacters_are_refused(collector, field, value):
    first = make_response(collector.design, 4)
    assert post(collector, json.dumps(first).encode())[0] == 201
    response = make_response(collector.design, 5)
    if field == "stimulus":
        response["recognition"][0]["stimulus"] = value
    else:
        response[field] = value
    status, data = post(collector, json.dumps(response).encode())
    assert status == 422 and data["error"].startswith("field ")
    assert stored_ids(collector) == [first["response_id"]]


def test_sql_metacharacters_in_a_free_text_answer_are_stored_verbatim(collector):
    name = "Robert'); DROP TABLE responses; -- \"Keanu\" Reeves"
    response = make_response(collector.design, 6, name=name)
    assert post(collector, json.dumps(response).encode())[0] == 201
    assert collector.store.responses()[0]["recognition"][0]["name"] == name
    db = sqlite3.connect(collector.store.path)
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (1,)


def test_replayed_response_id_is_refused(collector):
    response = make_response(collector.design, 8)
    assert post(collector, json.dumps(response).encode())[0] == 201
    replay = make_response(collector.design, 9, pick="none")
    replay["response_id"] = response["response_id"]
    for body in (response, replay):
        status, data = post(collector, json.dumps(body).encode())
        assert status == 409 and "already stored" in data["error"]
    assert collector.store.responses() == [response]


def test_other_requests_are_refused(collector):
    response = make_response(collector.design, 10)
    assert post(collector, json.dumps(response).encode(), "text/plain")[0] == 415
    bad_layout = make_response(collector.design, 11)
    bad_layout["seed"] = 12
    status, data = post(collector, json.dumps(bad_layout).encode())
    assert status == 422 and "layout of the recorded seed" in data["error"]
    host, port = collector.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/responses.sqlite")
    assert conn.getresponse().status == 404
    assert stored_ids(collector) == []
    assert collector.server_address[0] == "127.0.0.1"


def test_concurrent_respondents_and_racing_replays(collector):
    from concurrent.futures import ThreadPoolExecutor

    responses = [make_response(collector.design, 1000 + i) for i in range(24)]
    # Each response is sent twice at once: one of the two is stored, the other gets 409.
    bodies = [json.dumps(r).encode() for r in responses for _ in range(2)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda body: post(collector, body)[0], bodies))
    for i in range(0, len(statuses), 2):
        assert sorted(statuses[i:i + 2]) == [201, 409]
    assert sorted(stored_ids(collector)) == sorted(r["response_id"] for r in responses)


def test_a_taken_port_is_a_one_line_error(collector, keanu_survey, tmp_path):
    from likeness.survey.serve import SurveyServer

    port = collector.server_address[1]
    with pytest.raises(SurveyError, match=f"cannot listen on 127.0.0.1:{port}"):
        SurveyServer(keanu_survey[0], tmp_path / "other.sqlite", port=port)


# --- import, analysis, report section -------------------------------------------------------

def test_import_analyze_and_report(keanu_survey, tmp_path):
    survey_dir, design = keanu_survey
    files = []
    for i, kwargs in enumerate([{}, {}, {"pick": "none", "name": "Tom Cruise"},
                                {"attention": "Red"}, {"complete": False}]):
        files.append(tmp_path / f"r{i}.json")
        write_response_file(make_response(design, 100 + i, **kwargs), files[-1])
    broken = make_response(design, 200)
    broken["lineup"][1]["confidence"] = 9
    files.append(tmp_path / "broken.json")
    write_response_file(broken, files[-1])
    db = tmp_path / "db.sqlite"
    result = import_files(design, db, files)
    assert len(result["stored"]) == 5 and result["duplicate"] == []
    assert result["invalid"] == [f"{files[-1]}: field 'lineup[1].confidence': expected a whole "
                                 "number 1 to 5"]
    again = import_files(design, db, files[:5])
    assert again["stored"] == [] and len(again["duplicate"]) == 5
    assert ResponseStore(db, design).count() == 5

    summary = analyze_survey(survey_dir, db, tmp_path / "results")
    assert summary["exclusions"] == {"received": 5, "incomplete": 1,
                                     "failed attention check": 1, "analysed": 3}
    import pandas as pd

    episodes = pd.read_csv(tmp_path / "results" / "episodes.csv")
    # Two of the three analysed named the claimant and picked the claimant's photo.
    assert episodes["n"].tolist() == [3] * 7
    assert episodes["n_named"].tolist() == [2] * 7
    assert episodes["n_lineup_claimant"].tolist() == [2] * 7
    assert episodes["n_not_present"].tolist() == [1] * 7
    text, figures = survey_markdown(survey_dir, tmp_path / "results")
    assert "| excluded: failed attention check | 1 |" in text and "| analysed | 3 |" in text
    assert "| dev02 | questioned | 3 | 66.7% |" in text
    assert [f.name for f in figures] == ["survey_rates.png"]
    hashed = survey_files(survey_dir, tmp_path / "results")
    assert "design.json" in hashed and str(tmp_path / "results" / "episodes.csv") in hashed
    # design, page, 7 crops, the photos, 6 tables and summary.json, the figure as PNG and SVG
    assert len(hashed) == 2 + 7 + len(design["photos"]) + 6 + 2
    # The thin notebook shows the same section when papermill runs it on the project's kernel.
    import papermill

    from likeness.case import project_root

    out = tmp_path / "survey.ipynb"
    papermill.execute_notebook(
        str(project_root() / "notebooks" / "survey.ipynb"), str(out), kernel_name="likeness",
        parameters={"survey_dir": str(survey_dir), "results_dir": str(tmp_path / "results")},
        progress_bar=False, cwd=str(tmp_path))
    shown = out.read_text(encoding="utf-8")
    assert "| excluded: failed attention check | 1 |" in shown and "image/png" in shown
    # Same responses, same tables, byte for byte.
    analyze_survey(survey_dir, db, tmp_path / "again")
    for name in ("stimuli.csv", "episodes.csv", "lineup_choices.csv", "exclusions.csv"):
        again_bytes = (tmp_path / "again" / name).read_bytes()
        assert again_bytes == (tmp_path / "results" / name).read_bytes()


def test_cli_errors_are_one_line(keanu_survey, tmp_path, capsys):
    from likeness.cli import main

    survey_dir, _ = keanu_survey
    assert main(["survey", "analyze", str(tmp_path / "nothing"), "--responses", "x.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "design.json: not found" in err
    empty = tmp_path / "empty.sqlite"
    ResponseStore(empty, load_design(survey_dir))
    assert main(["survey", "analyze", str(survey_dir), "--responses", str(empty)]) == 2
    assert f"{empty}: no responses: nothing to analyse" in capsys.readouterr().err
    missing = tmp_path / "none.sqlite"
    assert main(["survey", "analyze", str(survey_dir), "--responses", str(missing)]) == 2
    assert f"{missing}: no such responses file" in capsys.readouterr().err
