"""``course site``: README, module index, rendered release notebooks and milestones, with every link checked."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import ROOT, learner_course, run_course

from course import site
from course.report import pyplot, save_figure


def test_site_renders_the_course_and_finds_broken_links(tmp_path: Path) -> None:
    course = learner_course(tmp_path / "course")
    for folder in [*course.source.iterdir(), *course.release.iterdir()]:  # two modules keep the test short
        if folder.name not in ("01_tensor", "02_activations"):
            shutil.rmtree(folder)
    shutil.copy2(ROOT / "README.md", course.root / "README.md")
    figure, axes = pyplot().subplots(figsize=(3, 2))  # what `course milestone 1957` would have saved
    axes.plot([0, 1], [0, 1])
    save_figure(figure, course.reports / "milestones" / "1957_perceptron.png")

    built = run_course(course, "site")
    assert built.returncode == 0, built.stdout + built.stderr
    out = course.reports / "site"
    assert sorted(p.name for p in (out / "modules").iterdir()) == ["01_tensor.html", "02_activations.html"]
    notebook = (out / "modules" / "01_tensor.html").read_text()
    assert "matmul_loops" in notebook and "YOUR CODE HERE" in notebook and "BEGIN SOLUTION" not in notebook
    assert "href='modules/02_activations.html'" in (out / "modules.html").read_text()
    milestones = (out / "milestones.html").read_text()
    assert "<img src='milestones/1957_perceptron.png'" in milestones and "course milestone 1969" in milestones
    assert 'href="#modules"' in (out / "index.html").read_text() and not site.broken_links(out)

    readme = course.root / "README.md"
    readme.write_text(readme.read_text() + "\n[gone](nowhere.html) and [no such part](#no-such-heading)\n")
    again = run_course(course, "site")
    assert again.returncode == 1
    assert "index.html: nowhere.html" in again.stderr and "index.html: #no-such-heading" in again.stderr
