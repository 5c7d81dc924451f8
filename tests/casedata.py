"""Paths of the real test data and a writer of case files, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from likeness.case import testdata_root

TESTDATA = testdata_root()
SWAP = TESTDATA / "sber-swap"
HAMILTON = TESTDATA / "face_recognition/examples/short_hamilton_clip.mp4"
ELON_REFERENCE = SWAP / "examples/images/elon_musk.jpg"
MARK_REFERENCE = SWAP / "examples/images/mark.jpg"
LFW = TESTDATA / "lfw/images_deepfunneled"

# The face-swap series of issue 3's acceptance: the original, three swaps and three real clips.
SWAP_EPISODES = {
    "orig": SWAP / "derived/orig.mp4",
    "elon": SWAP / "derived/elon.mp4",
    "mark": SWAP / "derived/mark.mp4",
    "khabenskii": SWAP / "derived/khabenskii.mp4",
    "dirtydancing": SWAP / "examples/videos/dirtydancing.mp4",
    "nggyup": SWAP / "examples/videos/nggyup.mp4",
    "hamilton": HAMILTON,
}


def write_case(
    folder: Path,
    *,
    case_id: str,
    claimant: str,
    references: list[Path],
    episodes: dict[str, Path],
    exclude: list[str] | None = None,
    population: Path | str = "${LIKENESS_TESTDATA}/lfw/images_deepfunneled",
    analysis: dict | None = None,
) -> Path:
    """Write a case.yaml into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "case_id": case_id,
        "title": f"Test case {case_id}",
        "claimant": {"name": claimant, "references": [str(p) for p in references]},
        "footage": [{"id": k, "path": str(v)} for k, v in episodes.items()],
        "population": {"path": str(population), "exclude": exclude or []},
        "analysis": {"sample_fps": 5, **(analysis or {})},
    }
    path = folder / "case.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path
