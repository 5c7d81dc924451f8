"""The survey page: one self-contained HTML file (HTML, CSS, JS and every image inline).

The page makes no request but one: it posts the response to ``submit_url`` (relative to the
page, so to its own origin). Its Content-Security-Policy forbids anything else, so it can be
hosted anywhere, opened offline (then the respondent downloads the answers as a file), and it
works at phone width. Nothing in the page says which lineup photo is the claimant's.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

from likeness.files import atomic_path
from likeness.survey.responses import MAX_NAME_CHARS, NOT_PRESENT, RESPONSE_FORMAT

PAGE_FILE = "survey.html"
NOT_PRESENT_LABEL = "Not present / not sure"


def _data_uri(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def page_config(design: dict, survey_dir: Path) -> dict:
    """What the page needs: texts, images as data URIs, lineup options; no roles or names."""
    options = design["options"]
    stimuli = []
    for s in design["stimuli"]:
        item = {"id": s["id"], "image": _data_uri(survey_dir / s["image"]),
                "options": s["lineup"]["options"]}
        if "frame_image" in s:
            item["frame_image"] = _data_uri(survey_dir / s["frame_image"])
        stimuli.append(item)
    return {
        "response_format": RESPONSE_FORMAT,
        "survey_id": design["survey_id"],
        "design_sha256": design["design_sha256"],
        "consent": options["consent"],
        "instructions": options["instructions"],
        "attention": {"question": options["attention"]["question"],
                      "options": options["attention"]["options"]},
        "confidence_levels": options["confidence_levels"],
        "submit_url": options["submit_url"],
        "not_present": NOT_PRESENT,
        "not_present_label": NOT_PRESENT_LABEL,
        "max_name_chars": MAX_NAME_CHARS,
        "stimuli": stimuli,
        "photos": {pid: _data_uri(survey_dir / p["image"]) for pid, p in
                   sorted(design["photos"].items())},
    }


def render_page(design: dict, survey_dir: Path) -> str:
    """The page's HTML text."""
    template = resources.files("likeness.survey").joinpath("templates", PAGE_FILE)
    text = template.read_text(encoding="utf-8")
    config = json.dumps(page_config(design, Path(survey_dir)), sort_keys=True,
                        ensure_ascii=True)
    # Inside <script>, "</" could close the element early: escape it.
    config = config.replace("</", "<\\/")
    return (text.replace("{{TITLE}}", html.escape(design["options"]["title"]))
            .replace("{{CONFIG}}", config))


def write_page(design: dict, survey_dir: str | Path) -> Path:
    """Write ``survey.html`` into the survey folder (atomically); return its path."""
    survey_dir = Path(survey_dir)
    path = survey_dir / PAGE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(render_page(design, survey_dir), encoding="utf-8")
    return path
