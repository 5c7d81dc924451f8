"""Issue 11's acceptance: 30 scripted respondents answer the development series' survey in a
real headless Chromium (Debian's), several at once, through `likeness survey serve` started on a
free 127.0.0.1 port; every response is stored once, `analyze` reproduces the scripted rates
exactly, the report section shows them, the page asks nothing of any other origin and works at
390 px width."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from likeness.survey.analyze import analyze_survey
from likeness.survey.report_section import survey_markdown
from likeness.survey.responses import ResponseStore
from surveydata import design_dev_survey

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
N_RESPONDENTS = 30
CONCURRENT = 5
ATTENTION_FAILS = {3, 17}
# Open answers in several scripts and spellings, and whether each names the claimant under
# the design's accepted names (Keanu Reeves, Киану Ривз, 基努·里维斯): written out here, not
# computed with the code under test.
OPEN_ANSWERS = [("keanu reeves", True), ("Киану Ривз", True), ("Tom Cruise", False),
                ("基努里维斯", True), ("  KÉANU   reeves!", True), ("Keanu", False)]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not installed at /usr/bin/chromium: run `make system`",
)


def script(i: int, j: int, stimulus: dict) -> dict:
    """Respondent i's scripted answers to the j-th stimulus of the design."""
    recognised = (i + j) % 3 == 0
    name, named = OPEN_ANSWERS[(i + 2 * j) % len(OPEN_ANSWERS)] if recognised else ("", False)
    claimant = stimulus["lineup"]["claimant"]
    foils = [p for p in stimulus["lineup"]["options"] if p != claimant]
    pick = (i * 7 + j) % 4
    choice = claimant if pick == 0 else "none" if pick == 1 else foils[(i + j) % len(foils)]
    return {"recognised": "yes" if recognised else "no", "name": name, "named": named,
            "choice": choice, "confidence": 1 + (i + j) % 5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_survey(tmp_path_factory):
    """The survey served by `likeness survey serve` in its own process: (survey_dir, design,
    url, db)."""
    folder = tmp_path_factory.mktemp("browser-survey")
    survey_dir, design = design_dev_survey(folder)
    db, port = folder / "responses.sqlite", free_port()
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "likeness.cli", "survey", "serve", str(survey_dir), "--db",
         str(db), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError((folder / "serve.log").read_text()) from None
                time.sleep(0.1)
        yield survey_dir, design, url, db
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (folder / "serve.log").read_text()
    assert "stopped" in (folder / "serve.log").read_text()


async def answer(browser, url: str, i: int, design: dict, viewport: dict,
                 outside: list[str], shots: Path | None, download: Path | None = None) -> str:
    """Respondent i goes through the page; returns the response id the page shows. With
    ``download``, the page is expected not to reach a collector and the respondent saves the
    answers there instead."""
    stimuli = {s["id"]: (j, s) for j, s in enumerate(design["stimuli"])}
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    origin = url.rstrip("/")
    page.on("request", lambda r: None if r.url.startswith((origin + "/", "data:", "blob:"))
            else outside.append(r.url))
    await page.goto(url)
    await page.check("#consent-agree")
    await page.click("#start")
    await page.click("#begin")
    screen = page.locator("#screen")
    while True:
        step = await screen.get_attribute("data-step")
        if step == "done":
            break
        if step == "recognition":
            sid = await screen.get_attribute("data-stimulus")
            a = script(i, *stimuli[sid])
            await page.check(f"#recognised-{a['recognised']}")
            if a["name"]:
                await page.fill("#name", a["name"])
            await page.click("#next")
        elif step == "attention":
            await page.check("#attention-Red" if i in ATTENTION_FAILS else "#attention-Purple")
            await page.click("#next")
        elif step == "lineup-intro":
            await page.click("#begin-lineups")
        elif step == "lineup":
            sid = await screen.get_attribute("data-stimulus")
            a = script(i, *stimuli[sid])
            await page.click(f"[data-photo='{a['choice']}']")
            await page.check(f"#confidence-{a['confidence']}")
            if shots is not None and not (shots / "lineup-390px.png").exists():
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], "the page scrolls sideways"
                await page.screenshot(path=str(shots / "lineup-390px.png"), full_page=True)
            await page.click("#next")
        else:
            raise AssertionError(f"unexpected step {step}")
    if download is None:
        await page.wait_for_selector("#screen[data-sent=yes]", timeout=30000)
    else:
        await page.wait_for_selector("#screen[data-sent=no]", timeout=30000)
        async with page.expect_download() as saved:
            await page.click("#download")
        await (await saved.value).save_as(download)
    response_id = await screen.get_attribute("data-response-id")
    await context.close()
    return response_id


async def run_respondents(url: str, design: dict, outside: list[str], shots: Path) -> list[str]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        gate = asyncio.Semaphore(CONCURRENT)
        phone = {"width": 390, "height": 844}

        async def one(i: int) -> str:
            async with gate:
                viewport = phone if i % 2 == 0 else {"width": 1280, "height": 900}
                return await answer(browser, url, i, design, viewport, outside,
                                    shots if i == 0 else None)

        try:
            return await asyncio.gather(*(one(i) for i in range(N_RESPONDENTS)))
        finally:
            await browser.close()


async def answer_offline(page_file: Path, design: dict, download: Path) -> str:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            return await answer(browser, page_file.as_uri(), 5, design,
                                {"width": 390, "height": 844}, [], None, download)
        finally:
            await browser.close()


def test_offline_page_and_downloaded_answers(served_survey, tmp_path):
    """The page opened from a file (no collector): the respondent downloads the answers,
    which `likeness survey import` stores like any other."""
    from likeness.cli import main

    survey_dir, design, _, _ = served_survey
    download = tmp_path / "response.json"
    response_id = asyncio.run(answer_offline(survey_dir / "survey.html", design, download))
    db = tmp_path / "imported.sqlite"
    assert main(["survey", "import", str(survey_dir), str(download), "--db", str(db)]) == 0
    [stored] = ResponseStore(db, design).responses()
    assert stored["response_id"] == response_id and stored["complete"] is True
    for j, s in enumerate(design["stimuli"]):
        a = script(5, j, s)
        assert [x["choice"] for x in stored["lineup"] if x["stimulus"] == s["id"]] == [a["choice"]]


def test_thirty_respondents_in_a_real_browser(served_survey, tmp_path):
    survey_dir, design, url, db = served_survey
    outside: list[str] = []
    ids = asyncio.run(run_respondents(url, design, outside, tmp_path))

    assert outside == [], "the page asked another origin"
    assert (tmp_path / "lineup-390px.png").stat().st_size > 0
    stored = ResponseStore(db, design).responses()
    assert len(ids) == N_RESPONDENTS == len(set(ids))
    assert sorted(r["response_id"] for r in stored) == sorted(ids)

    # The scripted rates, per stimulus, over the respondents who passed the attention check.
    analysed = [i for i in range(N_RESPONDENTS) if i not in ATTENTION_FAILS]
    results = tmp_path / "results"
    summary = analyze_survey(survey_dir, db, results)
    assert summary["exclusions"] == {"received": 30, "incomplete": 0,
                                     "failed attention check": 2, "analysed": 28}
    table = pd.read_csv(results / "stimuli.csv").set_index("stimulus")
    for j, s in enumerate(design["stimuli"]):
        answers = [script(i, j, s) for i in analysed]
        n = len(answers)
        expected = {
            "n": n,
            "n_recognised": sum(a["recognised"] == "yes" for a in answers),
            "n_named": sum(a["named"] for a in answers),
            "n_lineup_claimant": sum(a["choice"] == s["lineup"]["claimant"] for a in answers),
            "n_not_present": sum(a["choice"] == "none" for a in answers),
        }
        row = table.loc[s["id"]]
        assert {k: int(row[k]) for k in expected} == expected, s["id"]
        assert row["named_rate"] == round(expected["n_named"] / n, 6)
        assert row["lineup_rate"] == round(expected["n_lineup_claimant"] / n, 6)

    # The report section shows the computed rates.
    text, figures = survey_markdown(survey_dir, results)
    episodes = pd.read_csv(results / "episodes.csv")
    for r in episodes.itertuples():
        assert (f"| {r.group} | {r.role} | {r.n} | {100 * r.named_rate:.1f}% |") in text
        assert f"| {100 * r.lineup_rate:.1f}% |" in text
    assert figures and figures[0].exists()
    shot = os.environ.get("LIKENESS_SURVEY_SCREENSHOT")
    if shot:  # keep the phone-width screenshot for the documentation
        Path(shot).write_bytes((tmp_path / "lineup-390px.png").read_bytes())
