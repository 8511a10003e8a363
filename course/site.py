"""``make site`` (``course site``): the course as a static HTML site, built with nbconvert and checked for broken links.

The site holds the README, a module index, every release notebook rendered by nbconvert's HTML exporter (the
students' view: no solutions, no hidden tests), and the milestones with the plots found in ``reports/milestones/``
(``course milestone NAME`` makes them). Every link and image of every page is checked afterwards: a target
that is not in the site (or an anchor that is not on its page) fails the build, naming the page and the link.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from course import milestones
from course.modules import Course, CourseError, discover

HEADING_ID = re.compile(r'<h(?P<level>[1-6]) id="(?P<id>[^"]*)"')
ANCHOR_LINK = re.compile(r'<a class="anchor-link" href="#(?P<id>[^"]*)"')
STYLE = (
    "body{font-family:sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;line-height:1.45}"
    "img{max-width:100%;height:auto}pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}"
    "table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}"
    "nav{margin-bottom:1em}nav a{margin-right:1em}.anchor-link{display:none}"
)
NAV = (
    "<nav><a href='{up}index.html'>Course</a><a href='{up}modules.html'>Modules</a>"
    "<a href='{up}milestones.html'>Milestones</a></nav>"
)


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces as hyphens ("Two commands": two-commands)."""
    return re.sub(r"[^\w\- ]", "", html.unescape(text).strip().lower()).replace(" ", "-")


def markdown_page(markdown: str, title: str, up: str = "") -> str:
    """A page from Markdown, with nbconvert's renderer; headings get GitHub's anchors, as the README's links expect."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    body = markdown2html_mistune(markdown)
    body = HEADING_ID.sub(lambda m: f'<h{m["level"]} id="{slug(m["id"])}"', body)
    body = ANCHOR_LINK.sub(lambda m: f'<a class="anchor-link" href="#{slug(m["id"])}"', body)
    return page(title, body, up)


def page(title: str, body: str, up: str = "") -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>"
        f"<body>{NAV.format(up=up)}{body}</body></html>"
    )


def render_notebook(notebook: Path, target: Path) -> Path:
    """One release notebook as a standalone HTML page (nbconvert's ``lab`` template, no code hidden)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def build(course: Course, out: Path) -> list[Path]:
    """Write the site into ``out`` (emptied first, if it is a site this function made); the pages written."""
    marker = out / ".tinytorch-site"
    if out.exists():
        if not marker.is_file():
            raise CourseError(f"{out} exists and is not a site made by `course site`: choose another folder.")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker.write_text("made by `course site`; safe to delete\n", encoding="utf-8")
    readme = (course.root / "README.md").read_text(encoding="utf-8")
    pages = [out / "index.html"]
    pages[0].write_text(markdown_page(readme, "TinyTorch"), encoding="utf-8")

    rows = []
    for module in discover(course):
        notebook = course.release_notebook(module.name)
        if not notebook.is_file():
            continue
        pages.append(render_notebook(notebook, out / "modules" / f"{module.name}.html"))
        rows.append(
            f"<tr><td><a href='modules/{module.name}.html'>{module.name}</a></td>"
            f"<td><code>{html.escape(module.package_module or '')}</code></td></tr>"
        )
    index = "<h1>Modules</h1><p>The student notebooks (release/), as a learner starts them.</p>"
    index += f"<table><thead><tr><th>module</th><th>package</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    pages.append(out / "modules.html")
    pages[-1].write_text(page("Modules", index), encoding="utf-8")

    pages.append(out / "milestones.html")
    pages[-1].write_text(page("Milestones", _milestones(course, out)), encoding="utf-8")
    return pages


def _milestones(course: Course, out: Path) -> str:
    notes = course.root / "milestones" / "README.md"
    body = markdown_page(notes.read_text(encoding="utf-8"), "") if notes.is_file() else ""
    body = body[body.index("</nav>") + len("</nav>") : body.index("</body>")] if body else "<h1>Milestones</h1>"
    for milestone in milestones.discover_milestones(course):
        plot = course.reports / "milestones" / f"{milestone.name}.png"
        body += f"<h2 id='{milestone.name}'>{html.escape(milestone.title)}</h2>"
        if plot.is_file():
            (out / "milestones").mkdir(exist_ok=True)
            shutil.copy2(plot, out / "milestones" / plot.name)
            body += f"<p><img src='milestones/{plot.name}' alt='{html.escape(milestone.title)}'></p>"
        else:
            run = f"<code>course milestone {milestone.year}</code>"
            body += f"<p>No plot yet: run {run}, then build the site again.</p>"
    return body


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("name"):
            self.ids.add(str(found["name"]))
        for attribute in ("href", "src"):
            if found.get(attribute) and (tag, attribute) in {("a", "href"), ("img", "src"), ("link", "href")}:
                self.targets.append(str(found[attribute]))


@dataclass(frozen=True)
class BrokenLink:
    page: Path
    link: str

    def __str__(self) -> str:
        return f"{self.page}: {self.link}"


def broken_links(out: Path) -> list[BrokenLink]:
    """Links and images of the site's pages whose target is not in the site, or whose anchor is not on its page.

    Links to other sites (http, https, mailto) and inline data are not followed: the site is checked offline.
    """
    parsed: dict[Path, _Links] = {}
    for path in sorted(out.rglob("*.html")):
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        parsed[path.resolve()] = parser
    broken = []
    for path, parser in parsed.items():
        for link in parser.targets:
            address = urlparse(link)
            if address.scheme in ("http", "https", "mailto", "data"):
                continue
            target = (path.parent / unquote(address.path)).resolve() if address.path else path
            inside = target == out.resolve() or out.resolve() in target.parents
            anchors = parsed[target].ids if target in parsed else set()
            # A browser looks for the fragment as written, then percent-decoded (nbconvert's ids keep %22 and the like).
            missing_anchor = bool(address.fragment) and not {address.fragment, unquote(address.fragment)} & anchors
            if not inside or not target.is_file() or missing_anchor:
                broken.append(BrokenLink(path, link))
    return broken
