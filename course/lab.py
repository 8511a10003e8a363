"""``course lab`` and ``course formgrader``: JupyterLab on the course, set up for a learner or an instructor.

Both start JupyterLab from the course root, where nbgrader reads ``nbgrader_config.py`` (its Validate
button and formgrader load it from the server's working folder), with this environment's Python as
the notebooks' ``python3`` kernel. What each role sees is nbgrader's own per-role configuration
(nbgrader's "Installation" guide, "Disabling extensions"), kept in ``course/jupyter/<role>/``
and put first on ``JUPYTER_CONFIG_PATH`` for this server only, so one environment serves both roles:

- a learner gets the Validate button and the assignment list, not the instructor's "Create Assignment"
  panel, formgrader or course list;
- an instructor gets formgrader and "Create Assignment";
- neither gets JupyterLab's "Jupyter news" pop-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from course.grading import tool_env
from course.modules import Course

Role = Literal["learner", "instructor"]
ROLE_CONFIG = Path(__file__).resolve().parent / "jupyter"


@dataclass(frozen=True)
class LabCommand:
    """A JupyterLab server for one role: the command, its environment and its working folder."""

    args: list[str]
    env: dict[str, str]
    cwd: Path


def role_config(role: Role) -> Path:
    """The folder of Jupyter configuration for ``role`` (server extensions and ``labconfig/page_config.json``)."""
    return ROLE_CONFIG / role


def lab_command(
    course: Course, role: Role, *, port: int | None = None, open_browser: bool = True, token: str | None = None
) -> LabCommand:
    """The ``jupyter lab`` command a role runs, opening ``notebooks/`` (learner) or formgrader (instructor)."""
    start_page = "/lab/tree/notebooks" if role == "learner" else "/formgrader"
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={course.root}",
        f"--ServerApp.default_url={start_page}",
        f"--ServerApp.open_browser={open_browser}",
    ]
    if os.name == "posix" and os.geteuid() == 0:  # a container or CI machine, where everything runs as root
        args.append("--ServerApp.allow_root=True")
    if port is not None:
        args += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        args.append(f"--IdentityProvider.token={token}")
    env = tool_env()
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        part for part in (str(role_config(role)), env.get("JUPYTER_CONFIG_PATH", "")) if part
    )
    return LabCommand(args, env, course.root)


def run(course: Course, role: Role, *, port: int | None = None, open_browser: bool = True) -> int:
    """Start JupyterLab for ``role`` and wait until the user stops it (Ctrl-C)."""
    if role == "learner":
        course.workspace.mkdir(exist_ok=True)
    command = lab_command(course, role, port=port, open_browser=open_browser)
    try:
        return subprocess.call(command.args, env=command.env, cwd=command.cwd)
    except KeyboardInterrupt:
        return 0
