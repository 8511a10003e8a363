"""Grade reports: the CSV, a per-student table, plots of scores and test pass rates, an HTML page.

Everything is read from the gradebook (nbgrader's own CSV export included), so a report can be
written again at any time without touching a grade.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.grading import CellResult, GradeRow, cell_results, export_csv, grades
from course.modules import Course, CourseError


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


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path


def plot_grades(rows: list[GradeRow], path: Path) -> Path:
    """Bars of each student's percentage per assignment, so a struggling student stands out."""
    students = sorted({row.student for row in rows})
    assignments = sorted({row.assignment for row in rows})
    width = 0.8 / max(len(assignments), 1)
    figure, axes = _pyplot().subplots(figsize=(max(6.0, 0.5 * len(students) + 3), 4))
    for offset, assignment in enumerate(assignments):
        percent = {r.student: r.percent for r in rows if r.assignment == assignment}
        positions = [i + offset * width for i in range(len(students))]
        axes.bar(positions, [percent.get(s, 0.0) for s in students], width=width, label=assignment)
    axes.set_xticks([i + width * (len(assignments) - 1) / 2 for i in range(len(students))], students)
    axes.set_ylabel("score (% of points)")
    axes.set_ylim(0, 105)
    axes.set_title("Auto-graded scores per student and module")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the bars, not on them
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_distributions(rows: list[GradeRow], path: Path) -> Path:
    """One histogram of scores per module: the shape of the class, whatever its size."""
    assignments = sorted({row.assignment for row in rows})
    columns = min(4, max(len(assignments), 1))
    lines = -(-len(assignments) // columns)
    figure, axes = _pyplot().subplots(
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
    return _save(figure, path)


def plot_pass_rates(rates: list[tuple[str, str, float, int]], path: Path, most: int = 20) -> Path:
    """Horizontal bars: the share of submissions passing each of the ``most`` hardest test cells, hardest on top.

    A course has dozens of test cells; the page's table lists them all, the plot the ones worth a look.
    """
    total = len(rates)
    rates = rates[:most]
    figure, axes = _pyplot().subplots(figsize=(7, 0.32 * len(rates) + 1.2))
    labels = [f"{assignment} / {cell}" for assignment, cell, _, _ in rates]
    axes.barh(range(len(rates)), [100 * rate for _, _, rate, _ in rates], color="tab:green")
    axes.set_yticks(range(len(rates)), labels, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("submissions with full marks on the test cell (%)")
    shown = f"the {len(rates)} hardest of {total} test cells" if total > len(rates) else f"all {total} test cells"
    axes.set_title(f"Which tests students fail most\n({shown})")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def _page(table: str, rates: list[tuple[str, str, float, int]], images: list[Path]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(c)}</td><td>{100 * r:.0f}%</td><td>{n}</td></tr>"
        for a, c, r, n in rates
    )
    pictures = "".join(f'<p><img src="{image.name}" alt="{image.stem}"></p>' for image in images)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tinytorch grades</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "pre{background:#f6f6f6;padding:1em}</style></head><body><h1>tinytorch: auto-graded results</h1>"
        "<p>Grades CSV (nbgrader export): <a href='grades.csv'>grades.csv</a></p>"
        f"<h2>Students</h2><pre>{html.escape(table)}</pre><h2>Plots</h2>{pictures}"
        "<h2>Test cells, hardest first</h2><table><tr><th>module</th><th>test cell</th>"
        f"<th>passed</th><th>submissions</th></tr>{rows}</table></body></html>"
    )


def report(course: Course) -> Report:
    """Write the CSV, the plots and ``reports/index.html`` from the gradebook."""
    rows = grades(course)
    if not rows:
        raise CourseError("The gradebook has no graded submissions yet: run `course autograde NN_name` first.")
    folder = course.reports
    csv_path = export_csv(course, folder / "grades.csv")
    rates = pass_rates(cell_results(course))
    table = student_table(rows)
    images = [
        plot_grades(rows, folder / "grades.png"),
        plot_distributions(rows, folder / "distributions.png"),
        plot_pass_rates(rates, folder / "pass_rates.png"),
    ]
    page = folder / "index.html"
    page.write_text(_page(table, rates, images), encoding="utf-8")
    return Report(csv_path, images[0], images[1], images[2], page, table)
