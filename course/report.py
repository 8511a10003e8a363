"""Grade reports: a per-student table for the terminal, the CSV, and a plot of the grades."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from course.grading import GradeRow, export_csv, grades
from course.modules import Course, CourseError


@dataclass(frozen=True)
class Report:
    csv: Path
    plot: Path
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


def plot_grades(rows: list[GradeRow], path: Path) -> Path:
    """Bars of each student's percentage per assignment, so a struggling student stands out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = sorted({row.student for row in rows})
    assignments = sorted({row.assignment for row in rows})
    width = 0.8 / max(len(assignments), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(students) + 2), 4))
    for offset, assignment in enumerate(assignments):
        percent = {r.student: r.percent for r in rows if r.assignment == assignment}
        positions = [i + offset * width for i in range(len(students))]
        axes.bar(positions, [percent.get(s, 0.0) for s in students], width=width, label=assignment)
    axes.set_xticks([i + width * (len(assignments) - 1) / 2 for i in range(len(students))], students)
    axes.set_ylabel("score (% of points)")
    axes.set_ylim(0, 105)
    axes.set_title("Auto-graded scores per student and module")
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def report(course: Course) -> Report:
    """Write ``reports/grades.csv`` and ``reports/grades.png`` from the gradebook."""
    rows = grades(course)
    if not rows:
        raise CourseError("The gradebook has no graded submissions yet: run `course autograde NN_name` first.")
    csv_path = export_csv(course, course.reports / "grades.csv")
    plot_path = plot_grades(rows, course.reports / "grades.png")
    return Report(csv_path, plot_path, student_table(rows))
