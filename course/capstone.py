"""``course capstone``: module 20's models re-measured in a sandbox, claims checked, a leaderboard and a Pareto plot.

A capstone submission is ``submitted/<student>/20_capstone/`` holding, beside the notebook (graded by
``course autograde`` like any module), three files written by ``tinytorch.capstone.save_submission``:
``model.json`` (the architecture, from a fixed vocabulary of layers), ``model.npz`` (the arrays, read
without pickle) and ``metrics.json`` (what the student claims: accuracy, latency, size).

Everything in them is data and is treated as hostile. The grader reads each file itself (regular files only,
never following a link, under a size cap), checks ``metrics.json`` and ``model.json`` against the JSON Schemas
of ``tinytorch.capstone``, copies the bytes it read into a private folder, and measures the model there in a
bubblewrap sandbox (``course.sandbox``: no network, nothing of the course or of other students visible, memory,
CPU and time limits), with the reference ``tinytorch.capstone.measure``: accuracy on the fixed held-out split,
the median latency of one forward pass over it on one BLAS thread, and the bytes of the arrays. Submissions are
measured one after another, so that one student's measurement never slows down another's latency.

A claim better than the measurement beyond a tolerance (``tinytorch.capstone.check_claims``, the function the
learners write in module 20: accuracy by more than one held-out image, size by any byte, latency by more than
``TOLERANCES.latency_factor`` x plus ``TOLERANCES.latency_slack_ms``, for a different machine's noise) is
flagged and the submission needs attention; so does one whose files are missing, malformed, or whose
measurement crashed or ran out of time. The measured numbers, never the claimed ones, are checked against the
limits and go on the leaderboard. Results are written to ``capstone/<student>.json`` and kept: a later run
measures again only with ``--force``.
"""

from __future__ import annotations

import html
import json
import math
import os
import stat
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from course import submission
from course.modules import Course, CourseError
from course.sandbox import Cgroup, Limits, bwrap_command, plan_for, sandbox_problem

CAPSTONE = "20_capstone"
RESULTS = "capstone"  # <course>/capstone/<student>.json
FILES = ("model.json", "model.npz", "metrics.json")
MEASURE_SECONDS = 120  # wall clock for one measurement (an honest one takes about two seconds)
LIMITS = replace(Limits(), cpu_seconds=MEASURE_SECONDS)

MEASURED, ATTENTION, KEPT = "measured", "needs attention", "kept"
MEASURE_CODE = """
import json, sys
from tinytorch.capstone import load_submission, measure
model = load_submission(sys.argv[1])
print(json.dumps(measure(model)))
"""


@dataclass
class CapstoneResult:
    """One student's capstone: what they claimed, what the grader measured, and what a person should look at."""

    student: str
    status: str  # MEASURED or ATTENTION
    claimed: dict[str, Any] | None = None
    measured: dict[str, Any] | None = None
    within_limits: bool = False
    over_limits: list[str] = field(default_factory=list)  # the limits the measured model breaks
    flags: list[str] = field(default_factory=list)  # claims better than the measurement
    problems: list[str] = field(default_factory=list)  # why it could not be measured

    @property
    def reason(self) -> str:
        return "; ".join(self.problems + self.flags)


def results_folder(course: Course) -> Path:
    return course.root / RESULTS


def result_path(course: Course, student: str) -> Path:
    return results_folder(course) / f"{student}.json"


def read_result(path: Path) -> CapstoneResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CapstoneResult(**data)
    except (OSError, ValueError, TypeError):
        return None


def read_results(course: Course) -> list[CapstoneResult]:
    folder = results_folder(course)
    if not folder.is_dir():
        return []
    found = (read_result(path) for path in sorted(folder.glob("*.json")))
    return [result for result in found if result is not None]


def students(course: Course) -> list[str]:
    """Everyone with a ``submitted/<student>/20_capstone`` entry (a folder, or anything else to report)."""
    if not course.submitted.is_dir():
        return []
    return sorted(
        entry.name
        for entry in course.submitted.iterdir()
        if os.path.lexists(course.submission_folder(entry.name, CAPSTONE))
    )


def read_files(course: Course, student: str) -> tuple[dict[str, bytes], list[str]]:
    """The bytes of the three files (regular files, under their caps), and the problems found on the way."""
    from tinytorch.capstone import MAX_FILE_BYTES

    folder = course.submission_folder(student, CAPSTONE)
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return {}, ["no capstone folder"]
    if not stat.S_ISDIR(mode):
        return {}, [f"submitted/{student}/{CAPSTONE} is not a real folder"]
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for name in FILES:
        try:
            files[name] = submission._read_regular(folder / name, MAX_FILE_BYTES[name])
        except FileNotFoundError:
            problems.append(f"no {name} handed in")
        except (OSError, ValueError) as error:
            problems.append(f"{name} refused: {error}")
    if len(problems) == len(FILES) and all(p.startswith("no ") for p in problems):
        problems = ["no capstone files handed in (model.json, model.npz, metrics.json)"]
    return files, problems


def check_documents(files: dict[str, bytes]) -> tuple[dict[str, Any] | None, list[str]]:
    """The claimed metrics (None when invalid) and the problems of both JSON files against their schemas."""
    from tinytorch.capstone import validate_architecture, validate_metrics

    problems: list[str] = []
    documents: dict[str, Any] = {}
    for name, validate in (("metrics.json", validate_metrics), ("model.json", validate_architecture)):
        if name not in files:
            continue
        try:
            documents[name] = json.loads(files[name].decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            problems.append(f"{name} is not valid JSON ({str(error)[:120]})")
            continue
        problems += validate(documents[name])
    metrics = documents.get("metrics.json")
    valid = isinstance(metrics, dict) and not any(p.startswith("metrics.json") for p in problems)
    return (metrics if valid else None), problems


def _site_packages(exposed: list[Path]) -> list[Path]:
    """Site-packages folders on the path outside the exposed ones (a virtual environment layered on another)."""
    found: list[Path] = []
    for entry in sys.path:
        path = Path(entry).resolve() if entry else None
        if path is None or path.name not in ("site-packages", "dist-packages") or not path.is_dir():
            continue
        if not any(path == e or e in path.parents for e in [*exposed, *found]):
            found.append(path)
    return found


def _measure_command(folder: Path) -> list[str]:
    return [sys.executable, "-c", MEASURE_CODE, str(folder)]


def measure_folder(
    folder: Path, *, sandbox: bool = True, seconds: int = MEASURE_SECONDS
) -> tuple[dict[str, Any] | None, str]:
    """``(metrics, problem)``: the reference ``measure`` of the model in ``folder``, run in its own process.

    Sandboxed (the default): the process sees the interpreter, the reference package, the course's datasets
    and ``folder`` (read-only) and nothing else; no network; memory, CPU time and wall-clock limits. Its
    environment pins BLAS to one thread. ``problem`` is "" when the measurement succeeded.
    """
    from tinytorch.capstone import validate_metrics

    with tempfile.TemporaryDirectory(prefix="tt-capstone-") as private:
        env = {"PATH": os.environ.get("PATH", ""), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}  # fmt: skip
        cgroup = None
        command = _measure_command(folder)
        if sandbox:
            work, run = Path(private) / "work" / "capstone", Path(private) / "run"
            work.mkdir(parents=True)
            run.mkdir()
            plan = plan_for(work, run)
            plan.masked, plan.limits = [], LIMITS
            plan.exposed += [folder.resolve(), *_site_packages(plan.exposed)]
            cgroup = Cgroup.create(plan.limits)
            command = bwrap_command(plan, command, cgroup=cgroup is not None)
            if cgroup is not None:
                command = cgroup.wrap(command)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds, env=env, stdin=subprocess.DEVNULL, check=False
            )
        except subprocess.TimeoutExpired:
            return None, f"the measurement ran past its time limit of {seconds} s"
        finally:
            if cgroup is not None:
                cgroup.close()
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"the model could not be measured: {last[:300]}"
    try:
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "the measurement printed no result"
    if validate_metrics(measured):
        return None, "the measurement printed an invalid result"
    return measured, ""


def grade_one(course: Course, student: str, *, sandbox: bool = True) -> CapstoneResult:
    """Read, check and measure one student's capstone files (nothing is written)."""
    from tinytorch.capstone import check_budgets, check_claims

    files, problems = read_files(course, student)
    claimed, schema_problems = check_documents(files)
    problems += schema_problems
    if problems:
        return CapstoneResult(student, ATTENTION, claimed=claimed, problems=problems)
    with tempfile.TemporaryDirectory(prefix="tt-capstone-stage-") as staging:
        staged = Path(staging) / student
        staged.mkdir()
        for name, data in files.items():  # the bytes already read and checked, never the student's paths
            (staged / name).write_bytes(data)
        os.chmod(staging, 0o755)
        measured, problem = measure_folder(staged, sandbox=sandbox)
    if measured is None:
        return CapstoneResult(student, ATTENTION, claimed=claimed, problems=[problem])
    assert claimed is not None
    over = check_budgets(measured)
    flags = check_claims(claimed, measured)
    return CapstoneResult(
        student, ATTENTION if flags else MEASURED, claimed, measured, not over, over_limits=over, flags=flags
    )


def grade(
    course: Course, student: str | None = None, *, force: bool = False, sandbox: bool = True
) -> list[tuple[CapstoneResult, bool]]:
    """Measure every capstone submission (or one student's); ``(result, kept)`` pairs, kept ones not measured again.

    A result already in ``capstone/`` is kept unless ``force``; every new result is written there.
    """
    everyone = students(course)
    if student is not None and student not in everyone:
        raise CourseError(f"There is no submission of {CAPSTONE} by {student!r} in submitted/.")
    todo = [student] if student else everyone
    if not todo:
        raise CourseError(f"Nobody has submitted {CAPSTONE} yet: submissions go in submitted/<student>/{CAPSTONE}/.")
    if sandbox and (problem := sandbox_problem()):
        raise CourseError(
            f"Refusing to measure without a sandbox: {problem}. Pass --no-sandbox only for files you trust."
        )
    results: list[tuple[CapstoneResult, bool]] = []
    for name in todo:
        path = result_path(course, name)
        kept = None if force else read_result(path)
        if kept is not None:
            results.append((kept, True))
            continue
        result = grade_one(course, name, sandbox=sandbox)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(result), indent=1) + "\n", encoding="utf-8")
        temporary.replace(path)
        results.append((result, False))
    return results


def describe(result: CapstoneResult) -> str:
    """One line for the terminal."""
    if result.measured is None:
        return f"{result.student:<12} {result.status:<16} {result.reason}"
    m = result.measured
    limits = "within limits" if result.within_limits else "over: " + ", ".join(p.split()[0] for p in result.over_limits)
    flags = f"; {'; '.join(result.flags)}" if result.flags else ""
    return (
        f"{result.student:<12} {result.status:<16} accuracy {m['accuracy']:.4f}, {m['latency_ms']:.3f} ms, "
        f"{m['size_bytes']:,} B, {limits}{flags}"
    )


# --------------------------------------------------------------------------- leaderboard and Pareto plot


def leaderboard(results: list[CapstoneResult]) -> list[tuple[int | None, CapstoneResult, bool]]:
    """``(rank, result, on the Pareto front)``, measured results only.

    Models within the limits whose claims match are ranked by module 20's ``rank_variants`` (accuracy higher
    first, then size, then latency lower first; ties by name). Models over a limit, and models with flagged
    claims (until a person has looked), follow without a rank, by name. The Pareto front is computed over the
    models without flagged claims.
    """
    from tinytorch.capstone import pareto_front, rank_variants

    measured = sorted((r for r in results if r.measured is not None), key=lambda r: r.student)
    honest = [r for r in measured if not r.flags]
    points = [(m["accuracy"], m["latency_ms"], m["size_bytes"]) for r in honest if (m := r.measured) is not None]
    front = {id(honest[i]) for i in pareto_front(points)}
    by_name = {r.student: r for r in honest if r.within_limits}
    order = rank_variants({name: r.measured for name, r in by_name.items() if r.measured is not None})
    ranked: list[tuple[int | None, CapstoneResult, bool]] = [
        (position, by_name[name], id(by_name[name]) in front) for position, name in enumerate(order, start=1)
    ]
    ranked += [(None, r, id(r) in front) for r in measured if r.student not in order]
    return ranked


LABELLED = 40


def _close(x1: float, y1: float, x2: float, y2: float) -> bool:
    """Two points of the Pareto plot whose labels would overlap: within 15% on the log x axis, half a point in y."""
    return abs(math.log10(max(x1, 1e-12)) - math.log10(max(x2, 1e-12))) < 0.06 and abs(y1 - y2) < 0.005


def plot_pareto(results: list[CapstoneResult], path: Path) -> Path | None:
    """Accuracy against size and against latency for every measured model: the Pareto front in red, models over a
    limit as crosses, models with flagged claims as orange triangles, the limits dashed."""
    from course.report import pyplot, save_figure
    from tinytorch.capstone import LIMITS as TASK_LIMITS

    board = leaderboard(results)
    if not board:
        return None
    figure, axes = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for axis, key, label, limit in (
        (axes[0], "size_bytes", "size (bytes of stored arrays)", TASK_LIMITS.max_size_bytes),
        (axes[1], "latency_ms", "latency (ms, 360 images, one thread)", TASK_LIMITS.max_latency_ms),
    ):
        labels: list[tuple[float, float, list[str]]] = []  # students whose points nearly coincide share a label
        for _, result, on_front in sorted(board, key=lambda entry: not entry[1].flags):  # flagged ones underneath
            assert result.measured is not None
            x, y = result.measured[key], result.measured["accuracy"]
            if result.flags:
                color, marker = "tab:orange", "^"
            else:
                color, marker = ("tab:red" if on_front else "tab:gray"), ("o" if result.within_limits else "x")
            axis.scatter(x, y, color=color, marker=marker, zorder=3)
            near = next((label for label in labels if _close(label[0], label[1], x, y)), None)
            if near is None:
                labels.append((x, y, [result.student]))
            else:
                near[2].append(result.student)
        if len(board) <= LABELLED:
            for x, y, names in labels:
                axis.annotate(", ".join(sorted(names)), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.axhline(TASK_LIMITS.min_accuracy, color="tab:blue", linestyle="--", linewidth=1)
        axis.axvline(limit, color="tab:blue", linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("held-out accuracy (measured)")
        axis.grid(alpha=0.3)
    axes[0].set_title(f"Capstone: {len(board)} models, as measured by the grader")
    axes[1].set_title("red: Pareto front; x: over a limit; orange: flagged claims")
    return save_figure(figure, path)


def leaderboard_html(results: list[CapstoneResult]) -> str:
    """The report page's capstone section: the leaderboard (measured numbers) and who needs attention."""
    if not results:
        return ""
    rows = []
    for rank, result, on_front in leaderboard(results):
        assert result.measured is not None
        m = result.measured
        over = "yes" if result.within_limits else "over: " + ", ".join(p.split()[0] for p in result.over_limits)
        claims = "flagged: " + "; ".join(result.flags) if result.flags else "match"
        rows.append(
            f"<tr><td class='num' data-value='{rank or 9999}'>{rank or '-'}</td><td>{html.escape(result.student)}</td>"
            f"<td class='num'>{m['accuracy']:.4f}</td><td class='num'>{m['latency_ms']:.3f}</td>"
            f"<td class='num' data-value='{m['size_bytes']}'>{m['size_bytes']:,}</td><td>{html.escape(over)}</td>"
            f"<td>{'yes' if on_front else ''}</td><td>{html.escape(claims)}</td></tr>"
        )
    unmeasured = "".join(
        f"<li>{html.escape(r.student)}: {html.escape(r.reason)}</li>" for r in results if r.measured is None
    )
    return (
        "<h2 id='capstone'>Capstone leaderboard</h2><p>Every number below was measured by the grader in a sandbox "
        "(accuracy on the 360 held-out digits, the median latency of one forward pass over them on one thread, "
        "the bytes of the stored arrays); claims that were better than the measurement are flagged. Models within "
        "the limits whose claims match are ranked by accuracy, then size, then latency; models over a limit or with "
        "flagged claims are listed without a rank (the Pareto front leaves flagged models out).</p>"
        "<table class='sortable' id='leaderboard'><thead><tr><th class='num' data-type='number'>rank</th>"
        "<th>student</th><th class='num' data-type='number'>accuracy</th>"
        "<th class='num' data-type='number'>latency (ms)</th><th class='num' data-type='number'>size (bytes)</th>"
        f"<th>within limits</th><th>Pareto front</th><th>claims</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f"<p>Not measured (needs attention):</p><ul>{unmeasured}</ul>" if unmeasured else "")
    )
