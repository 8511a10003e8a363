"""``course status``: a learner's progress, module by module, as a terminal table and an HTML page with one chart.

Everything comes from what the learner's own commands left in ``notebooks/``: the working copies
(``course start``), the exported package (``course export``), the record of the last ``course check`` of each
module and of each milestone run with ``--learner``. Nothing is run, so it is instant and can be repeated.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from course import learner, milestones
from course.modules import Course, discover


@dataclass(frozen=True)
class ModuleProgress:
    name: str
    started: bool
    exported: bool
    check: learner.CheckRecord | None  # the last ``course check``


@dataclass(frozen=True)
class MilestoneProgress:
    name: str
    title: str
    run: milestones.MilestoneRun | None  # the last run with ``--learner``


@dataclass(frozen=True)
class Progress:
    modules: list[ModuleProgress]
    milestones: list[MilestoneProgress]


def progress(course: Course) -> Progress:
    checks = learner.last_checks(course)
    modules = [
        ModuleProgress(
            m.name, learner.working_copy(course, m).is_file(), learner.is_exported(course, m), checks.get(m.name)
        )
        for m in discover(course)
    ]
    runs = milestones.last_runs(course)
    found = [MilestoneProgress(m.name, m.title, runs.get(m.name)) for m in milestones.discover_milestones(course)]
    return Progress(modules, found)


def _check_text(check: learner.CheckRecord | None) -> tuple[str, str]:
    if check is None:
        return "-", "-"
    return f"{check.passed} of {check.total}", f"{check.points:g}/{check.max_points:g}"


def _milestone_text(found: MilestoneProgress) -> str:
    if found.run is None:
        return "not run with --learner"
    verdict = "reached" if found.run.reached else "not reached"
    return f"{verdict}{' (quick run)' if found.run.quick else ''}, {found.run.when}"


def table(done: Progress) -> str:
    """The terminal table: one line per module, then the milestones."""
    columns = "{:<18} {:<8} {:<9} {:<14} {}"
    lines = [columns.format("module", "started", "exported", "visible tests", "points (last check)")]
    for m in done.modules:
        passing, points = _check_text(m.check)
        lines.append(columns.format(m.name, "yes" if m.started else "-", "yes" if m.exported else "-", passing, points))
    lines += ["", "milestones:"]
    lines += [f"  {found.name:<18} {_milestone_text(found)}" for found in done.milestones]
    return "\n".join(lines)


def plot(done: Progress, path: Path) -> Path:
    """One chart: the points of each module's visible tests at the last check, out of what they are worth."""
    from course.report import pyplot, save_figure

    names = [m.name for m in done.modules]
    most = [m.check.max_points if m.check else 0.0 for m in done.modules]
    got = [m.check.points if m.check else 0.0 for m in done.modules]
    figure, axes = pyplot().subplots(figsize=(7, 0.3 * len(names) + 1.2))
    axes.barh(names, most, color="#dddddd", label="visible tests' points")
    axes.barh(names, got, color="tab:green", label="passed at your last `course check`")
    axes.invert_yaxis()
    axes.set_xlabel("points of the visible test cells")
    axes.set_title("Your progress, module by module")
    axes.legend(loc="lower right", fontsize="small")
    return save_figure(figure, path)


def write_page(course: Course, done: Progress) -> Path:
    """``reports/status.html`` with the table and the chart (``reports/status.png``)."""
    chart = plot(done, course.reports / "status.png")
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td><td>{'yes' if m.started else '-'}</td>"
        f"<td>{'yes' if m.exported else '-'}</td><td>{_check_text(m.check)[0]}</td><td>{_check_text(m.check)[1]}</td>"
        f"<td>{html.escape(m.check.when) if m.check else '-'}</td></tr>"
        for m in done.modules
    )
    reached = "".join(
        f"<li><b>{html.escape(found.title)}</b>: {html.escape(_milestone_text(found))}</li>"
        for found in done.milestones
    )
    page = course.reports / "status.html"
    page.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tinytorch: your progress</title>"
        "<style>body{font-family:sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em}"
        "img{max-width:100%;height:auto}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}"
        "table{border-collapse:collapse}</style></head><body><h1>tinytorch: your progress</h1>"
        "<table><thead><tr><th>module</th><th>started</th><th>exported</th><th>visible tests passing</th>"
        f"<th>points (last check)</th><th>checked</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p><img src='{chart.name}' alt='points per module at the last check'></p>"
        f"<h2>Milestones</h2><ul>{reached}</ul></body></html>",
        encoding="utf-8",
    )
    return page
