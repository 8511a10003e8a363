"""Grade reports: the CSV, a per-student table, plots of scores and test pass rates, an HTML page.

Everything is read from the gradebook (nbgrader's own CSV export included), so a report can be
written again at any time without touching a grade.
"""

from __future__ import annotations

import html
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course import capstone, notebooks
from course.grading import CellResult, GradeRow, cell_results, export_csv, grades
from course.modules import Course, CourseError, discover


@dataclass(frozen=True)
class Report:
    csv: Path
    plot: Path
    distributions: Path
    pass_rates: Path
    page: Path
    table: str


def student_table(rows: list[GradeRow]) -> str:
    """A fixed-width table: one row per student, one column per assignment, then the total."""
    assignments = sorted({row.assignment for row in rows})
    by_student: dict[str, dict[str, GradeRow]] = defaultdict(dict)
    for row in rows:
        by_student[row.student][row.assignment] = row
    header = ["student", *assignments, "total", "%"]
    lines = [header]
    for student, cells in sorted(by_student.items()):
        got = sum(cell.score for cell in cells.values())
        out_of = sum(cell.max_score for cell in cells.values())
        scores = [f"{cells[a].score:g}/{cells[a].max_score:g}" if a in cells else "-" for a in assignments]
        percent = f"{100 * got / out_of:.0f}" if out_of else "-"
        lines.append([student, *scores, f"{got:g}/{out_of:g}", percent])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)) for line in lines)


def pass_rates(cells: list[CellResult]) -> list[tuple[str, str, float, int]]:
    """(assignment, test cell, fraction of submissions with full marks, submissions), hardest first."""
    counts: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for cell in cells:
        counts[cell.assignment, cell.cell].append(cell.score >= cell.max_score)
    rates = [(a, c, sum(passed) / len(passed), len(passed)) for (a, c), passed in counts.items()]
    return sorted(rates, key=lambda rate: (rate[2], rate[0], rate[1]))


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot().close(figure)
    return path


PLOTTED_STUDENTS = 40


def plot_grades(rows: list[GradeRow], path: Path, most: int = PLOTTED_STUDENTS) -> Path:
    """Bars of each student's percentage per assignment, so a struggling student stands out.

    A class larger than ``most`` shows its ``most`` students with the lowest totals (the page's table has
    everyone): one bar group per student of a class of 3,000 would be a picture nobody can read.
    """
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        totals[row.student][0] += row.score
        totals[row.student][1] += row.max_score
    everyone = len(totals)
    students = sorted(totals, key=lambda s: (totals[s][0] / totals[s][1] if totals[s][1] else 0.0, s))[:most]
    students.sort()
    assignments = sorted({row.assignment for row in rows})
    width = 0.8 / max(len(assignments), 1)
    figure, axes = pyplot().subplots(figsize=(max(6.0, 0.25 * len(students) + 3), 4))
    for offset, assignment in enumerate(assignments):
        percent = {r.student: r.percent for r in rows if r.assignment == assignment}
        positions = [i + offset * width for i in range(len(students))]
        axes.bar(positions, [percent.get(s, 0.0) for s in students], width=width, label=assignment)
    rotation = 0 if len(students) <= 12 else 90
    axes.set_xticks([i + width * (len(assignments) - 1) / 2 for i in range(len(students))], students, rotation=rotation)
    axes.set_ylabel("score (% of points)")
    axes.set_ylim(0, 105)
    shown = f"the {len(students)} lowest totals of {everyone} students" if everyone > len(students) else "every student"
    axes.set_title(f"Auto-graded scores per student and module ({shown})")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the bars, not on them
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_distributions(rows: list[GradeRow], path: Path) -> Path:
    """One histogram of scores per module: the shape of the class, whatever its size."""
    assignments = sorted({row.assignment for row in rows})
    columns = min(4, max(len(assignments), 1))
    lines = -(-len(assignments) // columns)
    figure, axes = pyplot().subplots(
        lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False, sharey=True
    )
    for axis in axes.flat[len(assignments) :]:
        axis.set_visible(False)
    for axis, assignment in zip(axes.flat, assignments, strict=False):
        percents = [r.percent for r in rows if r.assignment == assignment]
        axis.hist(percents, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="tab:blue", edgecolor="white")
        axis.set_title(f"{assignment} (n={len(percents)})")
        axis.set_xlabel("score (% of points)")
        axis.set_xlim(0, 100)
    for line in axes:
        line[0].set_ylabel("submissions")
    axes[0][0].yaxis.get_major_locator().set_params(integer=True)
    return save_figure(figure, path)


def plot_pass_rates(rates: list[tuple[str, str, float, int]], path: Path, most: int = 20) -> Path:
    """Horizontal bars: the share of submissions passing each of the ``most`` hardest test cells, hardest on top.

    A course has dozens of test cells; the page's table lists them all, the plot the ones worth a look.
    """
    total = len(rates)
    rates = rates[:most]
    figure, axes = pyplot().subplots(figsize=(7, 0.32 * len(rates) + 1.2))
    labels = [f"{assignment} / {cell}" for assignment, cell, _, _ in rates]
    axes.barh(range(len(rates)), [100 * rate for _, _, rate, _ in rates], color="tab:green")
    axes.set_yticks(range(len(rates)), labels, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("submissions with full marks on the test cell (%)")
    shown = f"the {len(rates)} hardest of {total} test cells" if total > len(rates) else f"all {total} test cells"
    axes.set_title(f"Which tests students fail most\n({shown})")
    axes.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)


@dataclass(frozen=True)
class ModuleSummary:
    """One module across the class: how many submissions, their mean and median, and each test cell's pass rate."""

    assignment: str
    submissions: int
    mean: float
    median: float
    cells: list[tuple[str, float, float, int]]  # (test cell, points, fraction with full marks, submissions)


def cell_order(course: Course) -> dict[tuple[str, str], int]:
    """Each test cell's position in its release notebook (the gradebook keeps no order)."""
    order: dict[tuple[str, str], int] = {}
    for module in discover(course):
        path = course.release_notebook(module.name)
        if path.is_file():
            tests = [notebooks.grade_id(cell) for cell in notebooks.read(path).cells if notebooks.is_test(cell)]
            order.update(((module.name, grade_id), position) for position, grade_id in enumerate(tests))
    return order


def module_summaries(
    rows: list[GradeRow], cells: list[CellResult], order: dict[tuple[str, str], int] | None = None
) -> list[ModuleSummary]:
    """Mean and median score (% of points) per module, and the pass rate of every test cell, in notebook order."""
    order = order or {}
    points: dict[tuple[str, str], float] = {}
    for cell in sorted(cells, key=lambda c: (order.get((c.assignment, c.cell), len(order)), c.cell)):
        points.setdefault((cell.assignment, cell.cell), cell.max_score)
    rates = {(a, c): (rate, n) for a, c, rate, n in pass_rates(cells)}
    summaries = []
    for assignment in sorted({row.assignment for row in rows}):
        percents = [row.percent for row in rows if row.assignment == assignment]
        module_cells = [(c, points[a, c], *rates[a, c]) for a, c in points if a == assignment]
        mean, median = statistics.fmean(percents), statistics.median(percents)
        summaries.append(ModuleSummary(assignment, len(percents), mean, median, module_cells))
    return summaries


def attention(course: Course) -> dict[tuple[str, str], list[str]]:
    """Why a person should look at a (student, module), from what grading left: the gradebook and the folders.

    A submission in ``submitted/`` without a grade was refused or crashed (``course autograde`` says which);
    nbgrader asks for manual grading; an instructor flagged it in formgrader; or nbgrader left no graded notebook.
    """
    from nbgrader import api

    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    with api.Gradebook(course.gradebook_url) as gradebook:
        submissions = gradebook.db.query(api.SubmittedAssignment.student_id, api.Assignment.name).join(
            api.Assignment, api.SubmittedAssignment.assignment_id == api.Assignment.id
        )
        notebooks = submissions.join(
            api.SubmittedNotebook, api.SubmittedNotebook.assignment_id == api.SubmittedAssignment.id
        )
        graded = set(submissions.all())
        # Joins rather than nbgrader's column properties, whose correlated subqueries take minutes for 3,000 students.
        manual = set(
            notebooks.join(api.Grade, api.Grade.notebook_id == api.SubmittedNotebook.id)
            .filter(api.Grade.needs_manual_grade)
            .distinct()
            .all()
        )
        flagged = set(notebooks.filter(api.SubmittedNotebook.flagged).all())
    for key in sorted(graded):
        if key in manual:
            reasons[key].append("nbgrader asks for manual grading")
        if key in flagged:
            reasons[key].append("flagged in formgrader")
        if not course.autograded_notebook(*key).is_file():
            reasons[key].append("no graded notebook in autograded/")
    if course.submitted.is_dir():
        for module in discover(course):
            for folder in sorted(course.submitted.glob(f"*/{module.name}")):
                key = (folder.parent.name, module.name)
                if folder.is_dir() and key not in graded:
                    reasons[key].append("submitted but not graded (refused or crashed: `course autograde` says why)")
    return dict(reasons)


SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.tHead.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const body = table.tBodies[0], rows = Array.from(body.rows);
    const up = th.dataset.order !== "ascending";
    table.tHead.querySelectorAll("th").forEach(other => { delete other.dataset.order; });
    th.dataset.order = up ? "ascending" : "descending";
    const key = row => row.cells[column].dataset.value ?? row.cells[column].textContent;
    const numeric = th.dataset.type === "number";
    rows.sort((a, b) => (up ? 1 : -1) * (numeric ? parseFloat(key(a)) - parseFloat(key(b))
                                                 : key(a).localeCompare(key(b))));
    body.append(...rows);
  }));
}
const search = document.getElementById("search"), shown = document.getElementById("shown");
search.addEventListener("input", () => {
  const words = search.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let count = 0;
  for (const row of document.getElementById("students").tBodies[0].rows) {
    const text = row.textContent.toLowerCase();
    row.hidden = !words.every(word => text.includes(word));
    count += row.hidden ? 0 : 1;
  }
  shown.textContent = count;
});
"""

STYLE = """
body{font-family:sans-serif;margin:1.5em auto;max-width:75em;padding:0 1em;line-height:1.4}
img{max-width:100%;height:auto;display:block}
figure{margin:1em 0}
.box{overflow:auto;max-height:36em;border:1px solid #ddd}
table{border-collapse:collapse;font-size:0.92em}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
td.num,th.num{text-align:right}
thead th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;white-space:nowrap}
th[data-order=ascending]::after{content:" \\25B2"} th[data-order=descending]::after{content:" \\25BC"}
tr.attention td:first-child{border-left:4px solid #d9822b}
td.reasons{max-width:32em;color:#8a4b08}
input[type=search]{font-size:1em;padding:4px 8px;width:24em;max-width:100%;margin:0.5em 0}
details{margin:0.4em 0}
"""


def _percent(value: float) -> str:
    return f"{value:.0f}%"


def _module_section(summaries: list[ModuleSummary], attention_counts: dict[str, int]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.assignment)}</td><td class='num'>{s.submissions}</td>"
        f"<td class='num'>{_percent(s.mean)}</td><td class='num'>{_percent(s.median)}</td>"
        f"<td class='num'>{attention_counts.get(s.assignment, 0)}</td></tr>"
        for s in summaries
    )
    details = "".join(
        f"<details><summary>{html.escape(s.assignment)}: pass rate of each test cell</summary><table>"
        "<thead><tr><th>test cell</th><th class='num'>points</th><th class='num'>full marks</th>"
        "<th class='num'>submissions</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{html.escape(cell)}</td><td class='num'>{points:g}</td><td class='num'>{_percent(100 * rate)}"
            f"</td><td class='num'>{n}</td></tr>"
            for cell, points, rate, n in s.cells
        )
        + "</tbody></table></details>"
        for s in summaries
    )
    return (
        "<h2 id='modules'>Modules</h2><table class='sortable' id='summary'><thead><tr><th>module</th>"
        "<th class='num' data-type='number'>submissions</th><th class='num' data-type='number'>mean</th>"
        "<th class='num' data-type='number'>median</th><th class='num' data-type='number'>needs attention</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>{details}"
    )


def _student_section(
    course: Course, page: Path, rows: list[GradeRow], reasons: dict[tuple[str, str], list[str]]
) -> str:
    assignments = sorted({row.assignment for row in rows} | {a for _, a in reasons})
    by_student: dict[str, dict[str, GradeRow]] = defaultdict(dict)
    for row in rows:
        by_student[row.student][row.assignment] = row
    for student, _ in reasons:
        by_student.setdefault(student, {})
    header = "".join(
        f"<th class='num' data-type='number' title='{html.escape(a)}'>{html.escape(a.split('_')[0])}</th>"
        for a in assignments
    )
    lines = []
    for student, cells in sorted(by_student.items()):
        scores = []
        for assignment in assignments:
            grade = cells.get(assignment)
            if grade is None:
                scores.append("<td class='num' data-value='-1'>-</td>")
                continue
            text = f"{grade.score:g}/{grade.max_score:g}"
            feedback = course.feedback_page(student, assignment)
            if feedback.is_file():
                link = html.escape(os.path.relpath(feedback, page.parent))
                text = f"<a href='{link}' title='feedback for {html.escape(assignment)}'>{text}</a>"
            scores.append(f"<td class='num' data-value='{grade.percent:.3f}'>{text}</td>")
        got = sum(row.score for row in cells.values())
        out_of = sum(row.max_score for row in cells.values())
        percent = 100 * got / out_of if out_of else 0.0
        notes = [f"{a}: {r}" for a in assignments for r in reasons.get((student, a), [])]
        mark = " class='attention'" if notes else ""
        lines.append(
            f"<tr{mark}><td>{html.escape(student)}</td>{''.join(scores)}"
            f"<td class='num' data-value='{got:g}'>{got:g}/{out_of:g}</td>"
            f"<td class='num' data-value='{percent:.3f}'>{_percent(percent)}</td>"
            f"<td class='reasons' data-value='{len(notes)}'>{html.escape('; '.join(notes))}</td></tr>"
        )
    return (
        f"<h2 id='students-heading'>Students</h2><p><input type='search' id='search' "
        "placeholder='search: a student, a module, a reason' aria-label='search students'> "
        f"showing <span id='shown'>{len(lines)}</span> of {len(lines)} students; click a column to sort it, a score "
        "to read that student's feedback.</p><div class='box'><table class='sortable' id='students'><thead><tr>"
        f"<th>student</th>{header}<th class='num' data-type='number'>total</th>"
        "<th class='num' data-type='number'>%</th><th data-type='number'>needs attention</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def _page(
    course: Course,
    page: Path,
    rows: list[GradeRow],
    summaries: list[ModuleSummary],
    reasons: dict[tuple[str, str], list[str]],
    images: list[tuple[Path, str]],
    extra: str = "",
) -> str:
    counts: dict[str, int] = defaultdict(int)
    for _, assignment in reasons:
        counts[assignment] += 1
    students = len({row.student for row in rows} | {student for student, _ in reasons})
    csv = page.parent / "grades.csv"
    csv_link = f" Grades CSV (nbgrader's export): <a href='{csv.name}'>{csv.name}</a>." if csv.is_file() else ""
    pictures = "".join(
        f"<figure><img src='{image.name}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
        for image, caption in images
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>tinytorch grades</title>"
        f"<style>{STYLE}</style></head><body><h1>tinytorch: auto-graded results</h1>"
        f"<p>{students} students, {len(summaries)} modules, {sum(counts.values())} submission(s) needing attention."
        f"{csv_link}</p>"
        f"{_module_section(summaries, counts)}{_student_section(course, page, rows, reasons)}{extra}"
        f"<h2>Plots</h2>{pictures}<script>{SCRIPT}</script></body></html>"
    )


def write_page(
    course: Course, rows: list[GradeRow], cells: list[CellResult], reasons: dict[tuple[str, str], list[str]]
) -> tuple[Path, list[Path]]:
    """The plots and ``reports/index.html`` for these grades: the page and the plots' paths.

    The page links ``reports/grades.csv`` when it is there (``report`` writes it first).
    """
    folder = course.reports
    images = [
        (plot_grades(rows, folder / "grades.png"), "Scores per student and module"),
        (plot_distributions(rows, folder / "distributions.png"), "Distribution of scores per module"),
        (plot_pass_rates(pass_rates(cells), folder / "pass_rates.png"), "Test cells with the lowest pass rates"),
    ]
    capstone_results = capstone.read_results(course)
    pareto = capstone.plot_pareto(capstone_results, folder / "capstone_pareto.png") if capstone_results else None
    if pareto is not None:
        images.append((pareto, "Capstone: measured accuracy, size and latency of every model, with the Pareto front"))
    for student, reason in ((r.student, r.reason) for r in capstone_results if r.status == capstone.ATTENTION):
        reasons.setdefault((student, capstone.CAPSTONE), [])
        reasons[student, capstone.CAPSTONE].append(f"capstone files: {reason}")
    page = folder / "index.html"
    summaries = module_summaries(rows, cells, cell_order(course))
    extra = capstone.leaderboard_html(capstone_results)
    page.write_text(_page(course, page, rows, summaries, reasons, images, extra), encoding="utf-8")
    return page, [image for image, _ in images]


def report(course: Course) -> Report:
    """Write the CSV, the plots and ``reports/index.html`` from the gradebook."""
    rows = grades(course)
    if not rows:
        raise CourseError("The gradebook has no graded submissions yet: run `course autograde NN_name` first.")
    csv_path = export_csv(course, course.reports / "grades.csv")
    page, images = write_page(course, rows, cell_results(course), attention(course))
    return Report(csv_path, images[0], images[1], images[2], page, student_table(rows))
