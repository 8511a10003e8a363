"""``course``: one command for learners and instructors, composed from nbgrader and nbdev."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from course import autograde, grading, learner
from course.modules import Course, CourseError, discover, find_course, resolve
from course.package import build_package


def _start(course: Course, args: argparse.Namespace) -> int:
    print(learner.start(course, args.module, ignore_prerequisites=args.ignore_prerequisites))
    return 0


def _export(course: Course, args: argparse.Namespace) -> int:
    for written in learner.export(course, args.module):
        print(f"exported {written} -> {course.learner_package.relative_to(course.root)}")
    return 0


def _check(course: Course, args: argparse.Namespace) -> int:
    module = resolve(course, args.module)
    if learner.exported_is_stale(course, module):
        print(
            f"note: your notebook changed after the last export; run `course export {module.number:02d}` "
            "to check the new code."
        )
    results = learner.check(course, args.module)
    learner.record_check(course, module, results)
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        detail = f"  {result.reason}" if result.reason else ""
        print(f"{mark}  {result.grade_id} ({result.points:g} pts){detail}")
    for test_id, points in learner.notebook_only_tests(course, module):
        print(f"SKIP  {test_id} ({points:g} pts)  tests what the notebook built: run it there (or press Validate)")
    passed = sum(result.passed for result in results)
    print(f"{passed} of {len(results)} visible test cells passed for {module.name}.")
    return 0 if passed == len(results) else 1


def _list(course: Course, args: argparse.Namespace) -> int:
    checks = learner.last_checks(course)
    columns = "{:<18} {:<28} {:<8} {:<9} {}"
    print(columns.format("module", "exports to", "started", "exported", "last check (visible tests)"))
    for module in discover(course):
        started = "yes" if learner.working_copy(course, module).is_file() else "-"
        exported = "yes" if learner.is_exported(course, module) else "-"
        check = checks.get(module.name)
        last = (
            "-"
            if check is None
            else (f"{'passed' if check.all_passed else 'FAILED'}: {check.passed} of {check.total} cells, {check.when}")
        )
        print(columns.format(module.name, module.package_module or "", started, exported, last))
    return 0


def _status(course: Course, args: argparse.Namespace) -> int:
    from course import status

    done = status.progress(course)
    print(status.table(done))
    print(f"\nprogress page: {status.write_page(course, done)}")
    return 0


def _site(course: Course, args: argparse.Namespace) -> int:
    from course import site

    out = Path(args.out).resolve() if args.out else course.reports / "site"
    pages = site.build(course, out)
    broken = site.broken_links(out)
    for link in broken:
        print(f"broken link: {link}", file=sys.stderr)
    print(f"{len(pages)} pages in {out}; open {out / 'index.html'}")
    return 1 if broken else 0


def _lab(course: Course, args: argparse.Namespace) -> int:
    from course import lab

    return lab.run(course, "learner", port=args.port, open_browser=not args.no_browser)


def _formgrader(course: Course, args: argparse.Namespace) -> int:
    from course import lab

    return lab.run(course, "instructor", port=args.port, open_browser=not args.no_browser)


def _build_package(course: Course, args: argparse.Namespace) -> int:
    written = build_package(course)
    print(f"built tinytorch/ from source/: {len(written)} files")
    return 0


def _release(course: Course, args: argparse.Namespace) -> int:
    for name in grading.release(course, args.modules):
        print(f"released {name} -> release/{name}/")
    return 0


def _print_submissions(submissions: list[autograde.Submission]) -> int:
    for s in submissions:
        score = f"{s.score:g}/{s.max_score:g}" if s.score is not None and s.max_score is not None else "-"
        print(f"{s.student:<20} {s.assignment:<18} {s.status:<16} {score:<10} {s.reason}")
    return 0 if all(s.status == autograde.Status.GRADED for s in submissions) else 1


def _autograde(course: Course, args: argparse.Namespace) -> int:
    options = autograde.Options(
        force=args.force,
        sandbox=not args.no_sandbox,
        workers=args.workers,
        scheduler=args.scheduler,
        cumulative=args.cumulative,
    )
    return _print_submissions(autograde.autograde(course, args.module, args.student, options, progress=True))


def _feedback(course: Course, args: argparse.Namespace) -> int:
    folder = grading.feedback(course, args.module, args.student, force=args.force)
    print(f"feedback written under {folder.relative_to(course.root)}/")
    return 0


def _report(course: Course, args: argparse.Namespace) -> int:
    from course.report import report

    result = report(course)
    print(result.table)
    print(f"\ngrades CSV: {result.csv}\ngrades plot: {result.plot}\nreport page: {result.page}")
    return 0


def _demo(course: Course, args: argparse.Namespace) -> int:
    from course.demo import run_demo

    run_demo(course, (course.root / args.dir).resolve())
    return 0


def _bench(course: Course, args: argparse.Namespace) -> int:
    if args.what == "tokenization":
        from course.bench_tokenization import bench_tokenization

        print(bench_tokenization().table())
        return 0
    if args.what == "conv":
        from course.bench_conv import bench_conv

        print(bench_conv(threads=args.threads))
        return 0
    if args.what == "gpt":
        from course.bench_gpt import bench_gpt

        print(bench_gpt(threads=args.threads))
        return 0
    if args.what == "kv":
        from course.bench_kv import bench_kv

        print(bench_kv(threads=args.threads))
        return 0
    if args.what == "suite":
        from tinytorch.bench import run_suite

        names = args.models.split(",") if args.models else ["digits", "fashion", "gpt"]
        suite = run_suite(names, quick=args.quick, threads=args.threads, say=lambda line: print(line, flush=True))
        print(suite.table())
        return 0
    if args.what == "training":
        from course.bench_training import bench_training

        print(bench_training(threads=args.threads))
        return 0
    from course.bench import bench_grading

    print(bench_grading(course, args.module, args.submissions, args.workers).table())
    return 0


def _milestone(course: Course, args: argparse.Namespace) -> int:
    from course import milestones

    if args.name is None:
        for milestone in milestones.discover_milestones(course):
            missing = milestones.missing_modules(course, milestone)
            modules = ", ".join(name[:2] for name in missing)
            mine = f"export {modules} for --learner" if missing else "ready for --learner"
            print(f"{milestone.name:<18} {mine:<56} {milestone.title}")
        return 0
    out = Path(args.out).resolve() if args.out else None
    return milestones.run(course, args.name, learner=args.learner, out=out, quick=args.quick)


def _capstone(course: Course, args: argparse.Namespace) -> int:
    from course import capstone

    results = capstone.grade(course, args.student, force=args.force, sandbox=not args.no_sandbox)
    for result, kept in results:
        print(capstone.describe(result) + (" (kept; --force to measure again)" if kept else ""))
    print(f"results in {capstone.results_folder(course)}; `course report` draws the leaderboard and the Pareto plot")
    return 0 if all(result.status == capstone.MEASURED for result, _ in results) else 1


def _author(course: Course, args: argparse.Namespace) -> int:
    from course.authoring import convert_draft

    convert_draft(Path(args.draft), Path(args.notebook))
    print(f"wrote {args.notebook}; run `nbdev-clean` and `make build` next")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    parser.add_argument(
        "--db",
        default=os.environ.get("COURSE_DB_URL"),
        help="gradebook URL, e.g. postgresql://user:password@host/db (default: $COURSE_DB_URL, else gradebook.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[Course, argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    start = add("start", _start, "copy a module's student notebook into notebooks/ (never over your copy)")
    start.add_argument("module", help="01, tensor or 01_tensor")
    start.add_argument("--ignore-prerequisites", action="store_true", help="start before earlier modules are exported")
    add("export", _export, "export your notebooks into your own package, notebooks/tinytorch").add_argument(
        "module", nargs="?", help="one module (default: every module you started)"
    )
    add("check", _check, "run a module's visible tests against your exported package").add_argument("module")
    add("list", _list, "list the modules and which ones you started and exported")
    add("status", _status, "your progress per module and the milestones you reached (a table and reports/status.html)")
    add("site", _site, "build the course as a static HTML site (nbconvert) and check its links").add_argument(
        "--out", help="the site's folder (default: reports/site)"
    )
    for name, handler, text in (
        ("lab", _lab, "start JupyterLab on notebooks/ with the Validate button (a learner's view)"),
        ("formgrader", _formgrader, "start JupyterLab with nbgrader's formgrader on the course (an instructor's view)"),
    ):
        sub = add(name, handler, text)
        sub.add_argument("--port", type=int, help="the server's port (default: 8888 or the next free one)")
        sub.add_argument("--no-browser", action="store_true", help="do not open a browser; print the address")
    add("build-package", _build_package, "export every source notebook into the reference package, tinytorch/")
    add("release", _release, "generate student notebooks in release/ with nbgrader").add_argument(
        "modules", nargs="*", help="modules to release (default: all)"
    )
    for name, handler, text in (
        ("autograde", _autograde, "auto-grade the submissions of one module, sandboxed and in parallel"),
        ("feedback", _feedback, "write feedback HTML for graded submissions, without hidden tests"),
    ):
        sub = add(name, handler, text)
        sub.add_argument("module", help="e.g. 01_tensor")
        sub.add_argument("--student", help="only this student")
        sub.add_argument("--force", action="store_true", help="replace existing grades or feedback")
        if name == "autograde":
            sub.add_argument("--no-sandbox", action="store_true", help="run kernels unsandboxed (trusted code only)")
            sub.add_argument("--workers", type=int, default=0, help="parallel gradings (default: one per core)")
            sub.add_argument(
                "--cumulative", action="store_true", help="import the student's own earlier modules, not the reference"
            )
            sub.add_argument("--scheduler", help="grade on a Dask cluster: its scheduler address (tcp://host:8786)")
    capstone = add(
        "capstone",
        _capstone,
        "measure module 20's submitted models in a sandbox, flag inflated claims (results kept in capstone/)",
    )
    capstone.add_argument("--student", help="only this student")
    capstone.add_argument("--force", action="store_true", help="measure again, replacing kept results")
    capstone.add_argument("--no-sandbox", action="store_true", help="measure unsandboxed (trusted files only)")
    add("report", _report, "export grades to reports/grades.csv, plot them and write reports/index.html")
    add("demo", _demo, "play a small class through release, autograde, feedback and report").add_argument(
        "--dir", default="demo-class", help="the demo's own folder (default: demo-class)"
    )
    milestone = add("milestone", _milestone, "re-create a historical result (1957 ... 2018) and save its plot")
    milestone.add_argument("name", nargs="?", help="1957, perceptron or 1957_perceptron (default: list them)")
    milestone.add_argument("--learner", action="store_true", help="use your own package (notebooks/tinytorch)")
    milestone.add_argument("--out", help="folder for the plot (default: reports/milestones)")
    milestone.add_argument("--quick", action="store_true", help="a short run with a lower target (1998, 2017, 2018)")
    bench = add(
        "bench",
        _bench,
        "measure grading (course vs plain nbgrader), training (tinytorch vs NumPy, PyTorch), tokenization (BPE) "
        "conv (conv2d and a LeNet step vs PyTorch), gpt (a GPT training step vs PyTorch), kv (KV-cached generation "
        "vs generate) or suite (MLPerf-style: time to a held-out quality target, latency and throughput of the "
        "digits MLP, Fashion CNN and char GPT)",
    )
    bench.add_argument("what", choices=["grading", "training", "tokenization", "conv", "gpt", "kv", "suite"])
    bench.add_argument("--module", default="01", help="the module whose solution is graded (default: 01)")
    bench.add_argument("--submissions", type=int, default=100)
    bench.add_argument("--workers", type=int, default=0, help="parallel gradings (default: one per core)")
    bench.add_argument(
        "--threads", type=int, default=1,
        help="training, conv, gpt, kv, suite: threads for NumPy's BLAS and PyTorch (default: 1)",
    )
    bench.add_argument("--models", help="suite: a comma-separated subset of digits,fashion,gpt (default: all)")
    bench.add_argument("--quick", action="store_true", help="suite: small settings and lower targets (about a minute)")
    author = add("author", _author, "turn a percent-format draft into a source notebook")
    author.add_argument("draft")
    author.add_argument("notebook")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(find_course(db_url=args.db), args))
    except CourseError as error:
        print(f"course: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
