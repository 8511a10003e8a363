"""What the notebooks and the README say about the course itself stays true at every commit."""

from __future__ import annotations

import re

import pytest
from helpers import REPO, ROOT

from course import notebooks
from course.modules import discover

MODULES = discover(REPO)
EXISTING = {m.number for m in MODULES}
MODULE_REFERENCE = re.compile(
    r"\b[Mm]odules?\s+(?P<numbers>\d{1,2}(?:\s*(?:,|and|or|to|through|-|\u2013)\s*\d{1,2})*)"
    r"|\b(?P<folder>\d\d)_[a-z]+\b"
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*(])|\n\s*\n|\n\s*[-*|#]")


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text) if s.strip()]


def named_modules(sentence: str) -> set[int]:
    """The module numbers a sentence names: "module 12", "modules 09-13", "12_attention"."""
    found: set[int] = set()
    for match in MODULE_REFERENCE.finditer(sentence):
        if match["folder"]:
            found.add(int(match["folder"]))
            continue
        numbers = [int(n) for n in re.findall(r"\d{1,2}", match["numbers"])]
        ranged = re.search(r"\d\s*(?:-|\u2013|to|through)\s*\d", match["numbers"])
        found |= set(range(min(numbers), max(numbers) + 1)) if ranged else set(numbers)
    return found


def texts() -> list[tuple[str, str]]:
    found = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    for module in MODULES:
        for index, cell in enumerate(notebooks.read(module.source_notebook).cells):
            found.append((f"{module.name} cell {index}", cell.source))
    return found


def test_the_reference_finder_reads_the_forms_the_text_uses() -> None:
    assert named_modules("see module 12 and modules 14-16, or 19_benchmarking") == {12, 14, 15, 16, 19}
    assert named_modules("Modules 03, 04 and 06 use it") == {3, 4, 6}
    assert named_modules("20 modules in 2017") == set()


@pytest.mark.parametrize(("where", "text"), texts(), ids=[where for where, _ in texts()])
def test_a_module_that_does_not_exist_yet_is_called_planned(where: str, text: str) -> None:
    for sentence in sentences(text):
        missing = sorted(n for n in named_modules(sentence) if 1 <= n <= 20 and n not in EXISTING)
        assert not missing or "planned" in sentence.lower(), (
            f"{where} names module(s) {missing}, which do not exist yet, without saying they are planned: "
            f"{sentence.strip()[:200]!r}"
        )
