"""The processing log: appended step by step, with parameters and result hashes."""

from __future__ import annotations

import json

from likeness import processing_log
from likeness.files import sha256_file
from likeness.report import processing_log_table


def test_log_appends_start_and_end_with_result_hashes(tmp_path):
    (tmp_path / "episodes.csv").write_text("episode\nep01\n")
    started = processing_log.log_start(tmp_path, "analyze", {"sample_fps": 5.0, "seed": 1})
    processing_log.log_end(tmp_path, "analyze", started)
    killed = processing_log.log_start(tmp_path, "report", {"run_id": "r1"})
    assert killed > 0
    lines = (tmp_path / processing_log.LOG_FILE).read_text("utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["event"], e["step"]) for e in entries] == [
        ("start", "analyze"), ("end", "analyze"), ("start", "report")]
    assert entries[0]["parameters"] == {"sample_fps": 5.0, "seed": 1}
    assert entries[1]["result_sha256"] == {"episodes.csv": sha256_file(tmp_path / "episodes.csv")}
    table = processing_log_table(tmp_path)
    assert table["step"].tolist() == ["analyze", "report"]
    assert table["status"].tolist() == ["ok", "running or stopped"]
    assert table["results hashed"].tolist() == [1, 0]
    assert "sample_fps=5.0" in table["parameters"].iloc[0]


def test_nested_steps_close_their_own_start(tmp_path):
    outer = processing_log.log_start(tmp_path, "report")
    inner = processing_log.log_start(tmp_path, "analyze")
    processing_log.log_end(tmp_path, "analyze", inner)
    processing_log.log_end(tmp_path, "report", outer, status="failed", results=[],
                           message="boom")
    table = processing_log_table(tmp_path)
    assert table.set_index("step")["status"].to_dict() == {"report": "failed", "analyze": "ok"}
