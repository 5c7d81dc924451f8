"""Run folder safety: one writer at a time, recorded results checked before they are read,
and outputs that cannot be written (full disk, read-only folder, a file in the way).

Real `likeness` processes on real short clips (the 66-frame sber-swap clips) and a tiny real
population made in tmp from a few LFW identities.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from casedata import ELON_REFERENCE, LFW, SWAP, write_case
from likeness import models, runfolder
from likeness.analysis import analyze_case
from likeness.case import load_case
from likeness.errors import RunFolderIntegrityError
from likeness.faces_table import faces_path, read_faces

EPISODES = {"orig": SWAP / "derived/orig.mp4", "elon": SWAP / "derived/elon.mp4"}
IDENTITIES = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Gerhard_Schroeder")


def tiny_population(folder: Path, per_identity: int = 3) -> Path:
    """A few real LFW identities, linked (not copied) into ``folder``."""
    for name in IDENTITIES:
        (folder / name).mkdir(parents=True)
        for photo in sorted((LFW / name).iterdir())[:per_identity]:
            os.symlink(photo, folder / name / photo.name)
    return folder


def small_case(folder: Path, **analysis) -> Path:
    return write_case(
        folder / "case", case_id="robust", claimant="Elon Musk", references=[ELON_REFERENCE],
        episodes=EPISODES, population=tiny_population(folder / "population"),
        analysis={"bootstrap_samples": 100, **analysis},
    )


def fresh_cache(folder: Path) -> dict[str, str]:
    """An environment with an empty likeness cache holding only the verified weights."""
    weights = models.weights_path(models.DEFAULT_MODEL)
    (folder / "models").mkdir(parents=True)
    shutil.copyfile(weights, folder / "models" / weights.name)
    return {**os.environ, "LIKENESS_CACHE": str(folder)}


def likeness(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "likeness.cli", *map(str, args)]
    return subprocess.Popen(cmd, env=env or dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(process: subprocess.Popen, timeout: float = 1800) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def one_error_line(err: str) -> str:
    """The user's view of a failure: exactly one line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("likeness: error: "), err
    return lines[0]


def lock_is_held(run_dir: Path) -> bool:
    """Whether a process holds the run folder's lock, read from /proc/locks (taking the lock
    to find out would make the process under test fail to get it)."""
    path = run_dir / runfolder.LOCK_FILE
    if not path.exists():
        return False
    inode = f":{path.stat().st_ino}"
    with open("/proc/locks", encoding="ascii") as locks:
        return any(
            len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(inode)
            for fields in (line.split() for line in locks)
        )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> tuple[Path, Path]:
    """The small case analysed once (faces from the shared cache when there): (case, run)."""
    folder = tmp_path_factory.mktemp("analysed")
    case_file = small_case(folder)
    run_dir = folder / "run"
    analyze_case(load_case(case_file), run_dir, progress=False)
    return case_file, run_dir


# --------------------------------------------------------------------------------------------
# One writer


def test_second_analysis_on_the_same_folder_is_refused_and_the_first_completes(tmp_path):
    case_file = small_case(tmp_path)
    env = fresh_cache(tmp_path / "cache")  # nothing cached: the first run computes every face
    run_dir = tmp_path / "run"
    first = likeness("analyze", case_file, "--out", run_dir, "--quiet", env=env)
    deadline = time.monotonic() + 300
    while not lock_is_held(run_dir) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_is_held(run_dir), first.communicate()
    # Stopped, the first analysis still holds its lock but cannot finish before the second
    # asks: a fast machine or a warm cache would otherwise turn this into a race.
    first.send_signal(signal.SIGSTOP)
    try:
        second = likeness("analyze", case_file, "--out", run_dir, "--quiet", env=env)
        code, _, err = finish(second, timeout=300)
        assert lock_is_held(run_dir) and first.poll() is None
    finally:
        first.send_signal(signal.SIGCONT)
    assert code == 4, err
    line = one_error_line(err)
    assert str(run_dir.resolve()) in line
    assert "another likeness process is writing into this run folder" in line

    code, out, err = finish(first)
    assert code == 0, out + err
    statuses = json.loads((run_dir / "episode_status.json").read_text())
    assert {s["status"] for s in statuses.values()} == {"ok"}
    assert all(s["n_frames"] == 14 and s["n_faces"] >= 13 for s in statuses.values())
    assert (run_dir / "episodes.csv").is_file()
    # Every result the folder holds is recorded and matches its record.
    assert runfolder.check_recorded(run_dir) == []
    recorded = runfolder.read_record(run_dir)
    assert {"faces/orig.parquet", "faces/elon.parquet", "episodes.csv", "intake.json"} <= set(
        recorded
    )
    assert not any(entry.get("pending") for entry in recorded.values())

    # A damaged faces table in the cache is detected and recomputed, never read.
    cached = Path(env["LIKENESS_CACHE"]) / "faces"
    entries = sorted(cached.glob("*.parquet"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_bytes(b"PAR1 this is not a parquet file")
    again = tmp_path / "run2"
    code, out, err = finish(likeness("analyze", case_file, "--out", again, "--quiet", env=env))
    assert code == 0, out + err
    assert len(read_faces(again, "orig")) == len(read_faces(run_dir, "orig"))
    # Each damaged entry is named in one line of its own (likeness.cache).
    said = sorted(line for line in err.splitlines() if "cache entry discarded" in line)
    assert len(said) == len(entries) and "CacheWarning" not in err, err
    for line, entry in zip(said, entries, strict=True):
        assert line.startswith(f"likeness: warning: {entry}: cache entry discarded"), err
    assert all(pq.read_table(entry).num_rows > 0 for entry in entries)  # rewritten


def test_a_killed_writer_leaves_the_folder_usable(tmp_path):
    """kill -9 releases the lock (the kernel drops it) and keeps what was recorded."""
    case_file = small_case(tmp_path)
    env = fresh_cache(tmp_path / "cache")
    run_dir = tmp_path / "run"
    first = likeness("analyze", case_file, "--out", run_dir, "--quiet", env=env)
    deadline = time.monotonic() + 300
    while not faces_path(run_dir, "orig").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not lock_is_held(run_dir)
    code, out, err = finish(likeness("analyze", case_file, "--out", run_dir, "--quiet", env=env))
    assert code == 0, out + err
    assert runfolder.check_recorded(run_dir) == []


# --------------------------------------------------------------------------------------------
# Integrity between steps


def _copy_run(run_dir: Path, dst: Path) -> Path:
    shutil.copytree(run_dir, dst, symlinks=True)
    return dst


def _halve_rows(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows // 2).replace_schema_metadata(
        table.schema.metadata), path)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (_halve_rows, "changed since it was written"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "changed since it was written"),
        (_flip_a_byte, "changed since it was written (same size"),
        (lambda p: p.unlink(), "removed since it was written"),
    ],
    ids=["half-the-rows", "truncated", "one-byte-flipped", "removed"],
)
def test_changed_faces_table_is_refused_naming_it(analysed, tmp_path, tamper, said):
    case_file, run_dir = analysed
    run = _copy_run(run_dir, tmp_path / "run")
    table = faces_path(run, "elon")
    tamper(table)
    with pytest.raises(RunFolderIntegrityError) as caught:
        analyze_case(load_case(case_file), run, progress=False)
    assert f"{table}: {said}" in str(caught.value)
    if tamper is not _halve_rows:
        return  # the command line's view is the same for every kind of change
    code, _, err = finish(likeness("analyze", case_file, "--out", run, "--quiet"))
    assert code == 5
    line = one_error_line(err)
    assert str(table) in line and "refusing to read them" in line


def test_changed_intake_record_is_refused_by_intake_and_analysis(analysed, tmp_path):
    case_file, run_dir = analysed
    run = _copy_run(run_dir, tmp_path / "run")
    record = json.loads((run / "intake.json").read_text())
    record["evidence"][0]["sha256"] = "0" * 64
    (run / "intake.json").write_text(json.dumps(record))
    for command in ("intake", "analyze"):
        code, _, err = finish(likeness(command, case_file, "--out", run))
        assert code == 5, err
        assert f"{run / 'intake.json'}: " in one_error_line(err)


def test_unrecorded_garbage_faces_table_is_removed_and_rebuilt(analysed, tmp_path):
    """A faces table the record does not know (left by an interrupted run, or copied in) is
    never read: it is removed, the removal is a warning, and the episode is rebuilt."""
    case_file, run_dir = analysed
    run = _copy_run(run_dir, tmp_path / "run")
    table = faces_path(run, "orig")
    table.write_bytes(b"PAR1\x00garbage that is not a faces table\x00PAR1")
    record = json.loads((run / runfolder.OUTPUTS_FILE).read_text())
    del record["files"]["faces/orig.parquet"]
    (run / runfolder.OUTPUTS_FILE).write_text(json.dumps(record))
    code, out, err = finish(likeness("analyze", case_file, "--out", run, "--quiet"))
    assert code == 0, out + err
    assert read_faces(run, "orig").equals(read_faces(run_dir, "orig"))
    warnings = (run / "warnings.csv").read_text()
    assert f"{table}: not in outputs.json" in warnings and "removed and rebuilt" in warnings
    assert runfolder.check_recorded(run) == []


def test_report_refuses_a_tampered_analysis_when_the_run_id_is_reused(tmp_path):
    case_file = small_case(tmp_path, max_photos_per_identity=3)
    out = tmp_path / "reports"
    code, stdout, err = finish(likeness("report", case_file, "--out", out, "--run-id", "r1",
                                        "--quiet"))
    assert code == 0, stdout + err
    folder = out / "robust" / "r1"
    # Reusing the run id on an untouched folder resumes it: nothing is refused.
    code, stdout, err = finish(likeness("report", case_file, "--out", out, "--run-id", "r1",
                                        "--quiet"))
    assert code == 0, stdout + err
    code, stdout, _ = finish(likeness("verify", folder))
    assert code == 0, stdout
    table = faces_path(folder / "analysis", "elon")
    # An edit whose forger also rewrote the analysis' own record (outputs.json) is still
    # refused: the complete report's manifest is a second, independent record.
    original = table.read_bytes(), (folder / "analysis" / runfolder.OUTPUTS_FILE).read_bytes()
    _halve_rows(table)
    runfolder.record_files(folder / "analysis")
    code, stdout, err = finish(likeness("report", case_file, "--out", out, "--run-id", "r1",
                                        "--quiet"))
    assert code != 0, stdout + err
    line = one_error_line(err)
    assert str(table) in line and "new --run-id" in line
    table.write_bytes(original[0])
    (folder / "analysis" / runfolder.OUTPUTS_FILE).write_bytes(original[1])
    _halve_rows(table)
    code, stdout, err = finish(likeness("report", case_file, "--out", out, "--run-id", "r1",
                                        "--quiet"))
    assert code == 5, stdout + err
    line = one_error_line(err)
    assert str(table) in line and "changed since it was written" in line
    # The report is not blessed: verify fails, now and on every later try.
    code, stdout, _ = finish(likeness("verify", folder))
    assert code == 1 and "not 'complete'" in stdout
    code, _, err = finish(likeness("report", case_file, "--out", out, "--run-id", "r1",
                                   "--quiet"))
    assert code == 5 and str(table) in err


# --------------------------------------------------------------------------------------------
# Outputs that cannot be written


def test_out_naming_a_file_or_an_impossible_folder(analysed, tmp_path):
    case_file, _ = analysed
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for out in (a_file, a_file / "run"):
        code, _, err = finish(likeness("intake", case_file, "--out", out))
        assert code == 6, err
        line = one_error_line(err)
        assert str(a_file) in line and "choose another --out" in line


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def small_disk(tmp_path):
    where = tmp_path / "small-disk"
    if not _mount_tmpfs(where, "size=160k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the ulimit test covers it")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.fixture()
def read_only_folder(tmp_path):
    where = tmp_path / "read-only"
    if _mount_tmpfs(where, "ro,size=64k"):
        yield where
        subprocess.run(["umount", str(where)], check=True)
    elif os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
    else:
        pytest.skip("root without mount: no folder is read-only to this user")


def _no_result_looks_complete(run_dir: Path) -> None:
    """Every result left is recorded and intact; nothing half-written has a final name."""
    runfolder.check_recorded(run_dir)  # raises when a recorded file is not what was written
    for table in run_dir.rglob("*.parquet"):
        pq.read_table(table)  # readable and complete


def test_read_only_output_folder(analysed, read_only_folder):
    case_file, _ = analysed
    run = read_only_folder / "run"
    code, _, err = finish(likeness("analyze", case_file, "--out", run, "--quiet"))
    assert code == 6, err
    line = one_error_line(err)
    assert str(run) in line and ("Read-only file system" in line or "Permission" in line)


def test_full_disk_mid_run(analysed, small_disk):
    case_file, _ = analysed
    run = small_disk / "run"
    code, _, err = finish(likeness("analyze", case_file, "--out", run, "--quiet"))
    assert code == 6, err
    line = one_error_line(err)
    assert "No space left on device" in line and str(small_disk) in line
    _no_result_looks_complete(run)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_file_size_limit_mid_run(analysed, tmp_path):
    """The disk-full path without root: writes past RLIMIT_FSIZE fail like a full disk."""
    case_file, _ = analysed
    run = tmp_path / "run"
    process = likeness("analyze", case_file, "--out", run, "--quiet",
                       preexec_fn=_limit_file_size(20_000))
    code, _, err = finish(process)
    assert code == 6, err
    line = one_error_line(err)
    assert "File too large" in line and str(run) in line
    _no_result_looks_complete(run)
