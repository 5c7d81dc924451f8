"""The ``likeness`` command: intake, analyze, validate, report, verify, models, population,
survey, screen.

Each sub-command is a thin call into the library. :func:`main` is the one boundary between
the library and the user, for every sub-command: an error the library raises on purpose
(LikenessError) is printed as one line naming the file, the field and what to do, and exits
with its class's status (``EXIT_CODES``); a full disk or a read-only folder exits 6; anything
unforeseen prints one line with the path of a log file that holds the traceback, and exits 70.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import traceback
import warnings
from pathlib import Path

from likeness.errors import (
    EXIT_CODES,
    CaseError,
    LikenessError,
    LikenessWarning,
    ResourceError,
)


def _default_run_dir(case_path: str) -> Path:
    from likeness.case import load_case

    return Path("runs") / load_case(case_path).case_id


def cmd_intake(args: argparse.Namespace) -> int:
    from likeness.case import load_case
    from likeness.intake import intake_case

    case = load_case(args.case)
    run_dir = Path(args.out or _default_run_dir(args.case))
    record = intake_case(case, run_dir)
    for item in record["evidence"]:
        print(f"{item['sha256']}  {item['role']:9s} {item['path']}")
    print(f"wrote {run_dir / 'intake.json'}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from likeness.analysis import analyze_case
    from likeness.case import load_case

    case = load_case(args.case)
    run_dir = Path(args.out or _default_run_dir(args.case))
    statuses = analyze_case(case, run_dir, progress=not args.quiet)
    failed = [s for s in statuses.values() if s["status"] == "failed"]
    for s in statuses.values():
        print(
            f"{s['episode']:12s} {s['status']:9s} {s['n_frames']:7d} frames "
            f"{s['n_faces']:7d} faces  {s['message']}"
        )
    print(f"results in {run_dir}")
    # Every other episode is analysed, but a failed one makes the run incomplete.
    return 3 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from likeness.protocols import validate_lfw
    from likeness.validation import LFW_REFERENCE_COUNTS

    counts = [args.refs] if args.refs else list(LFW_REFERENCE_COUNTS)
    for n_refs in counts:
        out = Path(args.out) / f"refs-{n_refs}"
        summary = validate_lfw(args.model, out, seed=args.seed, n_refs=n_refs)
        calibrator = summary["calibrator"] or {}
        default = " (the default protocol)" if n_refs == LFW_REFERENCE_COUNTS[0] else ""
        print(f"LFW, identity-disjoint halves, {n_refs} reference photo(s){default}:")
        for key, value in (summary["validation"] or {}).items():
            print(f"  {key}: {value}")
        for key in ("method", "lower_log10_lr", "upper_log10_lr", "n_same_source",
                    "n_different_source", "n_identities"):
            print(f"  calibrator {key}: {calibrator.get(key)}")
        for row in summary["comparison"]:
            print(f"  compared {row['method']:9s} cllr {row['cllr']:.4f} "
                  f"cllr_min {row['cllr_min']:.4f} monotone {row['monotone']}")
        for warning in summary["warnings"]:
            print(f"  warning: {warning}")
        print(f"  figures and validation.json in {out}")
    if args.video:
        from likeness.protocols import validate_video

        result = validate_video(Path(args.out) / "video", model_name=args.model)
        print(result.to_string(index=False))
        print(f"video protocol in {Path(args.out) / 'video'}")
    return 0


def _parse_setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as YAML, as it would be in case.yaml (5, 0.5, null, name)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CaseError(f"--set {text!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def cmd_report(args: argparse.Namespace) -> int:
    from likeness.report import build_report

    overrides = dict(_parse_setting(item) for item in args.set)
    with contextlib.ExitStack() as stack:
        if args.run_id:
            # A named run id may be built by two commands at once: one writer per folder.
            from likeness.case import load_case
            from likeness.case_yaml import check_id
            from likeness.runfolder import writer_lock

            run_id = check_id(args.run_id, "--run-id", "run id")
            folder = Path(args.out).expanduser() / load_case(args.case).case_id / run_id
            stack.enter_context(writer_lock(folder, "report"))
        folder = build_report(
            args.case, args.out, run_id=args.run_id, overrides=overrides,
            progress=not args.quiet, survey_dir=args.survey,
            survey_results_dir=args.survey_results,
        )
    print(f"report in {folder}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from likeness.report import verify_run

    changes = verify_run(Path(args.run_dir))
    for change in changes:
        print(change)
    if not changes:
        print(f"{args.run_dir}: no change: every hash in manifest.json matches")
    return 1 if changes else 0


def cmd_models(args: argparse.Namespace) -> int:
    from likeness import model_build, models

    if args.build:
        path = model_build.build_weights(args.build, Path(args.weights) if args.weights else None)
        print(f"{args.build}: {path}")
    for row in models.models_table().to_dict("records"):
        print(f"{row['name']}:")
        for key, value in row.items():
            if key != "name":
                print(f"  {key:14s} {value}")
    return 0


def cmd_survey_design(args: argparse.Namespace) -> int:
    from likeness.survey.design import design_survey, load_options

    options = load_options(args.options, args.name)
    design = design_survey(args.case, args.run, args.out, options)
    for s in design["stimuli"]:
        print(f"{s['id']}  {s['group']:16s} {s['role']:10s} lineup of "
              f"{len(s['lineup']['options'])} photos")
    print(f"survey {design['survey_id']} (design_sha256 {design['design_sha256']})")
    print(f"page: {Path(args.out) / 'survey.html'}")
    return 0


def cmd_survey_serve(args: argparse.Namespace) -> int:
    from likeness.survey.serve import serve

    serve(args.survey_dir, args.db or Path(args.survey_dir) / "responses.sqlite",
          host=args.host, port=args.port, max_body=args.max_body)
    return 0


def cmd_survey_import(args: argparse.Namespace) -> int:
    from likeness.survey.design import load_design
    from likeness.survey.responses import import_files

    design = load_design(args.survey_dir)
    result = import_files(design, args.db or Path(args.survey_dir) / "responses.sqlite",
                          args.files)
    print(f"stored {len(result['stored'])}, already stored {len(result['duplicate'])}, "
          f"invalid {len(result['invalid'])}")
    for line in result["invalid"]:
        print(f"invalid: {line}")
    return 1 if result["invalid"] else 0


def cmd_survey_export(args: argparse.Namespace) -> int:
    from likeness.survey.design import load_design
    from likeness.survey.responses import export_csv

    design = load_design(args.survey_dir)
    out = export_csv(design, args.db or Path(args.survey_dir) / "responses.sqlite", args.out)
    print(f"wrote {out}")
    return 0


def cmd_survey_analyze(args: argparse.Namespace) -> int:
    from likeness.survey.analyze import analyze_survey

    summary = analyze_survey(args.survey_dir, args.responses, args.out,
                             precision=args.precision)
    for reason, n in summary["exclusions"].items():
        print(f"{reason:24s} {n}")
    print(f"respondents needed per cell for +/-{args.precision:.2f}: "
          f"{summary['required_n_per_cell']}")
    print(f"results in {args.out or Path(args.survey_dir) / 'results'}")
    return 0


def _add_survey_parser(sub) -> None:
    survey = sub.add_parser("survey", help="recognition and lineup surveys of the public")
    ssub = survey.add_subparsers(dest="survey_command", required=True)
    p = ssub.add_parser("design", help="build the survey (stimuli, lineups, page) from a run")
    p.add_argument("case", help="case.yaml or the folder holding it")
    p.add_argument("--run", required=True, help="the case's analysed run folder")
    p.add_argument("--out", required=True, help="survey folder to write")
    p.add_argument("--options", help="YAML file of survey options (see survey/design.py)")
    p.add_argument("--name", action="append", default=[],
                   help="an accepted name or spelling of the claimant (repeatable)")
    p.set_defaults(func=cmd_survey_design)
    p = ssub.add_parser("serve", help="serve the survey page and collect responses")
    p.add_argument("survey_dir")
    p.add_argument("--db", help="SQLite store (default: SURVEY_DIR/responses.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body", type=int, default=64 * 1024, help="largest request, bytes")
    p.set_defaults(func=cmd_survey_serve)
    p = ssub.add_parser("import", help="store responses downloaded by respondents")
    p.add_argument("survey_dir")
    p.add_argument("files", nargs="+", help="response .json files")
    p.add_argument("--db", help="SQLite store (default: SURVEY_DIR/responses.sqlite)")
    p.set_defaults(func=cmd_survey_import)
    p = ssub.add_parser("export", help="write the stored responses as CSV")
    p.add_argument("survey_dir")
    p.add_argument("--db", help="SQLite store (default: SURVEY_DIR/responses.sqlite)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.set_defaults(func=cmd_survey_export)
    p = ssub.add_parser("analyze", help="rates, intervals, lineup fairness, exclusions")
    p.add_argument("survey_dir")
    p.add_argument("--responses", required=True,
                   help="the SQLite store, a response .json file or a folder of them")
    p.add_argument("--out", help="results folder (default: SURVEY_DIR/results)")
    p.add_argument("--precision", type=float, default=0.05,
                   help="target half-width of a 95%% interval, for the sample size")
    p.set_defaults(func=cmd_survey_analyze)


def cmd_population_describe(args: argparse.Namespace) -> int:
    from likeness.population import describe_population

    tables = describe_population(Path(args.path), tuple(args.exclude))
    print(tables["summary"].to_string(index=False))
    if len(tables["attributes"]):
        print()
        print(tables["attributes"].to_string(index=False))
    if args.identities:
        print()
        print(tables["identities"].to_string(index=False))
    return 0
def cmd_screen(args: argparse.Namespace) -> int:
    from likeness.screen import default_params, screen_catalogue

    params = default_params(**dict(_parse_setting(item) for item in args.set))
    summary = screen_catalogue(
        args.watchlist, args.videos, args.out, population=args.population, params=params,
        ray=args.ray, workers=args.workers, progress=not args.quiet,
    )
    for row in summary["videos_table"].itertuples():
        print(f"{row.video:40s} {row.status:9s} {int(row.n_tracks):4d} tracks "
              f"{int(row.n_hits):3d} hits  {row.best_hits or row.message}")
    print(f"{summary['n_hits']} hits; results in {args.out}")
    # Every other video is screened, but a failed one makes the screening incomplete.
    return 3 if summary["videos"].get("failed") else 0
def _exit_codes_epilog() -> str:
    lines = [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()]
    return "exit status:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="likeness",
        description="Forensic analysis of likeness (portrait-rights) cases built on face-swaps.",
        epilog=_exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("intake", help="hash and probe every evidence file of a case")
    p.add_argument("case", help="case.yaml or the folder holding it")
    p.add_argument("--out", help="run folder (default: runs/<case_id>)")
    p.set_defaults(func=cmd_intake)

    p = sub.add_parser("analyze", help="detect, embed and score every face of a case")
    p.add_argument("case", help="case.yaml or the folder holding it")
    p.add_argument("--out", help="run folder (default: runs/<case_id>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("validate", help="validate a model's calibrated LRs on LFW")
    p.add_argument("--model", default="facenet-casia-webface")
    p.add_argument("--out", default="reports/validation", help="folder for metrics and figures")
    p.add_argument("--seed", type=int, default=20260325)
    p.add_argument("--refs", type=int, help="one reference count (default: 3, 1 and 5)")
    p.add_argument("--video", action="store_true",
                   help="also run the video protocol on the face-swap test data")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("report", help="run the notebooks into a reproducible expert report")
    p.add_argument("case", help="case.yaml or the folder holding it")
    p.add_argument("--out", default="reports", help="reports folder (default: reports/)")
    p.add_argument("--run-id", help="name of the report's folder (default: time and hash)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an analysis parameter of case.yaml, e.g. --set sample_fps=2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--survey", metavar="SURVEY_DIR",
                   help="add the section of a survey (likeness survey design + analyze)")
    p.add_argument("--survey-results", metavar="DIR",
                   help="the survey's results folder (default: SURVEY_DIR/results)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("screen", help="screen many videos against a watchlist of people")
    p.add_argument("--watchlist", required=True,
                   help="folder with one sub-folder of reference photos per protected person")
    p.add_argument("--videos", required=True,
                   help="folder of videos, a quoted glob pattern, or a manifest .csv (path)")
    p.add_argument("--out", required=True, help="output folder (a rerun resumes it)")
    p.add_argument("--population", help="calibration population, one folder per identity")
    p.add_argument("--ray", metavar="local|ADDRESS",
                   help="run the per-video work on Ray: 'local' starts a local cluster")
    p.add_argument("--workers", type=int, help="Ray actors (default: the cluster's CPUs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a screening or analysis parameter, e.g. --set flag_log10_lr=2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("verify", help="re-hash a report's inputs and outputs against its manifest")
    p.add_argument("run_dir", help="a report folder holding manifest.json")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("models", help="list, verify and build the embedding models' weights")
    p.add_argument(
        "--build",
        nargs="?",
        const="facenet-casia-webface",
        metavar="NAME",
        help="build (or import) a model's weights into the cache",
    )
    p.add_argument("--weights", help="for facenet-vggface2: the weights file to import")
    p.set_defaults(func=cmd_models)

    _add_survey_parser(sub)
    p = sub.add_parser("population", help="describe a population folder")
    population = p.add_subparsers(dest="population_command", required=True)
    p = population.add_parser(
        "describe", help="identities, photos per identity, sizes and population.csv attributes")
    p.add_argument("path", help="population folder: one sub-folder of photos per identity")
    p.add_argument("--exclude", action="append", default=[], metavar="IDENTITY",
                   help="leave an identity out (as a case's population.exclude does)")
    p.add_argument("--identities", action="store_true", help="also list every identity")
    p.set_defaults(func=cmd_population_describe)
    return parser


INTERNAL_ERROR_EXIT = 70
INTERRUPTED_EXIT = 130
# 128 + SIGPIPE, as a shell reports a program whose reader went away.
CLOSED_PIPE_EXIT = 141
LOG_DIR_NAME = "logs"


def one_line(message: object) -> str:
    """A message on one line: the lines of a multi-line message joined with '; '."""
    parts = [part.strip() for part in str(message).splitlines()]
    return "; ".join(part for part in parts if part).replace(":;", ":")


def _log_folder(args: argparse.Namespace) -> Path:
    """Where a traceback goes: the run folder (``--out``) when it exists, else the user cache
    folder's ``logs/`` (never a report folder being verified: that would change it)."""
    out = getattr(args, "out", None)
    if out and Path(out).is_dir() and os.access(out, os.W_OK):
        return Path(out)
    try:
        from likeness.models import cache_dir

        return cache_dir() / LOG_DIR_NAME
    except Exception:  # the cache itself may be what is broken
        import tempfile

        return Path(tempfile.gettempdir()) / "likeness-logs"


def _write_crash_log(args: argparse.Namespace, exc: BaseException) -> Path | None:
    """Write the traceback of an unforeseen error to a log file; its path, or None."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = (
        f"likeness {getattr(args, 'command', '?')} failed at {stamp} (pid {os.getpid()})\n"
        f"argv: {sys.argv!r}\n\n" + "".join(traceback.format_exception(exc))
    )
    import tempfile

    for folder in (_log_folder(args), Path(tempfile.gettempdir())):
        path = folder / f"likeness-error-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
            return path
        except OSError:
            continue
    return None


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed sub-command behind the boundary: no traceback ever reaches the user."""
    from likeness.files import output_error

    try:
        return args.func(args)
    except LikenessError as exc:
        print(f"likeness: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # Not an error of ours: the reader (`| head`) has what it wanted. Quietly, and with
        # stdout pointed at /dev/null so that Python's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE_EXIT
    except KeyboardInterrupt:
        print(
            "likeness: interrupted; what was finished is kept, run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    except MemoryError:
        error = ResourceError(
            "out of memory; close other programs, lower analysis.detect_batch_size and "
            "analysis.embed_batch_size in case.yaml, or use a machine with more memory"
        )
        print(f"likeness: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as exc:
        if isinstance(exc, OSError):
            known = output_error(exc.filename or getattr(args, "out", None) or "output", exc)
            if known is not None:
                print(f"likeness: error: {one_line(known)}", file=sys.stderr)
                return known.exit_code
        log = _write_crash_log(args, exc)
        where = f"; the traceback is in {log}" if log else ""
        print(
            f"likeness: internal error ({type(exc).__name__}: {one_line(exc)[:300]}){where}; "
            "please report it with that file",
            file=sys.stderr,
        )
        return INTERNAL_ERROR_EXIT


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """likeness's own warnings as one line for the user; others as Python shows them."""
    if issubclass(category, LikenessWarning):
        return f"likeness: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
