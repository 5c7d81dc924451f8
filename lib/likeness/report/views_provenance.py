"""What the report shows of the case's provenance: the examiner, the instructions, the questions
put to the expert (verbatim), the declaration with its signature and peer-review lines, where
each reference photo and each episode came from, and the processing log.

Every field is optional in ``case.yaml``; an absent one is printed as "not recorded"
(:data:`likeness.provenance.NOT_RECORDED`), never left out, so the reader sees what is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from likeness import processing_log
from likeness.case import Case
from likeness.provenance import NOT_RECORDED, shown


def examiner_table(case: Case) -> pd.DataFrame:
    """The examiner, their qualifications and who instructed them."""
    p = case.provenance
    rows = [
        ("examiner", shown(p.examiner.name)),
        ("qualifications", shown(p.examiner.qualifications)),
        ("instructed by", shown(p.instructed_by)),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _quote(text: str) -> str:
    """Markdown block quote of a text, line by line (verbatim)."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def questions_markdown(case: Case) -> str:
    """The questions put to the expert, verbatim, numbered; "not recorded" when there are none."""
    questions = case.provenance.questions
    if not questions:
        return f"*The questions put to the expert: {NOT_RECORDED} in the case file.*"
    lines = ["The questions put to the expert, verbatim from the instructions:", ""]
    for i, question in enumerate(questions, 1):
        lines.append(_quote(f"{i}. {question}"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def declaration_markdown(case: Case) -> str:
    """The expert's declaration (verbatim, or "not recorded"), then a signature line and a
    peer-review line to be completed by hand."""
    p = case.provenance
    name = shown(p.examiner.name)
    text = (_quote(p.declaration) if p.declaration
            else f"*Declaration: {NOT_RECORDED} in the case file.*")
    return (
        f"{text}\n\n"
        "<table class=\"signature\"><tr>"
        f"<td>Signed: ______________________________<br>{name}</td>"
        "<td>Date: ____________________</td></tr>"
        "<tr><td>Peer review by: ______________________________<br>name and signature</td>"
        "<td>Date: ____________________</td></tr></table>\n"
    )


def references_provenance_table(case: Case) -> pd.DataFrame:
    """One row per reference photo: file, source, date obtained, notes."""
    rows = []
    for path in case.reference_paths:
        record = case.provenance.reference(path)
        rows.append({"photo": Path(path).name, "source": shown(record.source),
                     "obtained": shown(record.obtained), "notes": shown(record.notes)})
    return pd.DataFrame(rows, columns=["photo", "source", "obtained", "notes"])


def footage_provenance_table(case: Case) -> pd.DataFrame:
    """One row per episode: file, source (and capture), date obtained, notes."""
    rows = []
    for episode in case.episodes:
        record = case.provenance.episode(episode.id)
        rows.append({"episode": episode.id, "file": episode.path.name,
                     "source": shown(record.source), "obtained": shown(record.obtained),
                     "notes": shown(record.notes)})
    return pd.DataFrame(rows, columns=["episode", "file", "source", "obtained", "notes"])


def processing_log_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The run folder's processing log: one row per step that ended (or started and never
    ended: "running or stopped"; the report's own step is still running when its page is
    written), with its times, status, parameters' digest and the result files it hashed."""
    log = processing_log.read_log(run_dir)
    rows = []
    for entry in log.to_dict("records"):
        if entry["event"] == "start":
            parameters = entry.get("parameters") or {}
            rows.append({
                "started (UTC)": str(entry["time_utc"]).replace("T", " ").replace("+00:00", ""),
                "step": entry["step"],
                "command": entry.get("command") or "",
                "parameters": ", ".join(f"{k}={json.dumps(v)}" for k, v in
                                        sorted(parameters.items())),
                "status": "running or stopped",
                "seconds": float("nan"),
                "results_hashed": 0,
            })
        else:
            # An end closes the latest open start of its step (steps nest: report > analyze).
            open_rows = [r for r in rows
                         if r["step"] == entry["step"] and r["status"] == "running or stopped"]
            if open_rows:
                open_rows[-1].update(status=entry.get("status") or "",
                                     seconds=entry.get("seconds"),
                                     results_hashed=len(entry.get("result_sha256") or {}))
    table = pd.DataFrame(rows, columns=["started (UTC)", "step", "command", "parameters",
                                        "status", "seconds", "results_hashed"])
    return table.rename(columns={"results_hashed": "results hashed"})
