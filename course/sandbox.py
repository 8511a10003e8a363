"""Sandboxed grading kernels: bubblewrap and prlimit around every kernel nbgrader starts.

nbgrader runs a student's notebook in a Jupyter kernel. Here that kernel runs in a bubblewrap
sandbox: no network, its own process namespace (every process dies with the kernel), a
read-only view of the system, the course folders replaced by empty ones except the kernel's
own working folder (a small scratch tmpfs), the reference implementation of the graded module
and later ones masked, and prlimit limits on memory, CPU time, processes and file size.
The kernel talks to nbgrader over Unix sockets (ipc transport) in a private folder, since the
sandbox has no network at all.

``SandboxedExecute`` replaces nbgrader's ``Execute`` preprocessor in ``nbgrader_config.py``.
Setting ``COURSE_NO_SANDBOX=1`` (``course autograde --no-sandbox``) runs kernels unsandboxed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute

from course.modules import MODULE_DIR, Course, discover

NO_SANDBOX_ENV = "COURSE_NO_SANDBOX"
CUMULATIVE_ENV = "COURSE_CUMULATIVE_PACKAGES"
GiB, MiB = 1024**3, 1024**2
# Folders where people and services keep files: empty inside the sandbox (Python itself is bound back).
PRIVATE_FOLDERS = ("/root", "/home", "/srv", "/mnt", "/media", "/var/lib", "/var/mail", "/var/backups")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading kernel."""

    memory_bytes: int = 4 * GiB  # address space; NumPy and OpenBLAS reserve far more than they touch
    cpu_seconds: int = 900
    processes: int = 128  # beyond those the user already runs: RLIMIT_NPROC counts per user
    file_bytes: int = 64 * MiB
    scratch_bytes: int = 256 * MiB


def sandbox_problem() -> str | None:
    """Why sandboxed grading cannot run here, or None when it can."""
    missing = [tool for tool in ("bwrap", "prlimit") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found (Debian packages bubblewrap and util-linux; "
            "`make install` installs them where apt-get works)"
        )
    trial = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if trial.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {trial.stderr.strip() or trial.returncode}"
    return None


@dataclass
class SandboxPlan:
    """What one grading kernel can see and use."""

    workdir: Path
    rundir: Path
    hidden: list[Path] = field(default_factory=list)
    exposed: list[Path] = field(default_factory=list)
    masked: list[Path] = field(default_factory=list)
    pythonpath: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)


def _reference_package() -> Path:
    import tinytorch

    return Path(tinytorch.__file__).resolve().parent


def _graded_module_number(workdir: Path) -> int | None:
    match = MODULE_DIR.match(workdir.name)
    return int(match["number"]) if match else None


def plan_for(workdir: Path, rundir: Path, cumulative_package: Path | None = None) -> SandboxPlan:
    """The sandbox of a kernel working in ``autograded/<student>/<NN_name>``."""
    workdir, package = workdir.resolve(), _reference_package()
    course_root = workdir.parents[2] if len(workdir.parents) > 2 else workdir.parent
    private = {Path(folder) for folder in PRIVATE_FOLDERS if Path(folder).is_dir()}
    roots = sorted({course_root, package.parent} | private, key=lambda p: len(p.parts))
    exposed = [
        root / name for root in roots for name in (".venv", "tinytorch", "datasets") if (root / name).exists()
    ]
    exposed += [Path(p).resolve() for p in {sys.prefix, sys.base_prefix} if Path(p).resolve() not in exposed]
    number = _graded_module_number(workdir)
    masked: list[Path] = []
    if cumulative_package is not None:
        masked = sorted(p for p in package.rglob("*.py") if p.name != "__init__.py")
    elif number is not None and (course_root / "source").is_dir():
        for module in discover(Course(course_root)):
            exported = module.exported_file(package)
            if module.number >= number and exported is not None and exported.is_file():
                masked.append(exported)
    return SandboxPlan(
        workdir=workdir,
        rundir=rundir,
        hidden=roots,
        exposed=exposed,
        masked=masked,
        pythonpath=[cumulative_package] if cumulative_package else [],
    )


def _running_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all, not the kernel's alone)."""
    import psutil

    me = os.getuid()
    count = 0
    for process in psutil.process_iter(["uids"]):
        uids = process.info.get("uids")
        count += bool(uids and uids.real == me)
    return count


def bwrap_command(plan: SandboxPlan, kernel_cmd: list[str]) -> list[str]:
    """``kernel_cmd`` wrapped in bubblewrap and prlimit according to ``plan``."""
    limits = plan.limits
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    cmd += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    cmd += ["--size", str(limits.scratch_bytes), "--tmpfs", "/tmp"]
    for hidden in plan.hidden:
        cmd += ["--tmpfs", str(hidden)]
    for exposed in plan.exposed:
        cmd += ["--ro-bind", str(exposed), str(exposed)]
    for masked in plan.masked:
        cmd += ["--ro-bind", "/dev/null", str(masked)]
    for extra in plan.pythonpath:
        cmd += ["--ro-bind", str(extra), str(extra)]
    cmd += ["--bind", str(plan.rundir), str(plan.rundir)]
    cmd += ["--size", str(limits.scratch_bytes), "--tmpfs", str(plan.workdir), "--chdir", str(plan.workdir)]
    for hidden in plan.hidden:  # the empty stand-ins for course folders take no writes
        cmd += ["--remount-ro", str(hidden)]
    cmd += ["--unsetenv", "JPY_PARENT_PID", "--setenv", "TMPDIR", str(plan.rundir)]
    cmd += ["--setenv", "JUPYTER_RUNTIME_DIR", str(plan.rundir), "--setenv", "HOME", str(plan.workdir)]
    if plan.pythonpath:
        cmd += ["--setenv", "PYTHONPATH", os.pathsep.join(map(str, plan.pythonpath))]
    cmd += ["prlimit", f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}"]
    cmd += [f"--nproc={_running_processes() + limits.processes}", f"--fsize={limits.file_bytes}", "--"]
    return cmd + kernel_cmd


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start inside the sandbox of their working folder."""

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        workdir = Path(kw.get("cwd") or os.getcwd())
        self._sandbox_rundir = Path(tempfile.mkdtemp(prefix="tt-kernel-"))
        self.transport = "ipc"
        self.ip = str(self._sandbox_rundir / "kernel")
        self.connection_file = str(self._sandbox_rundir / "connection.json")
        env = dict(kw.get("env") or os.environ)
        env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
        kw["env"] = env
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        own_packages = os.environ.get(CUMULATIVE_ENV)  # <folder>/<student>/tinytorch, one per student
        own = Path(own_packages) / workdir.resolve().parent.name if own_packages else None
        plan = plan_for(workdir, self._sandbox_rundir, own)
        return bwrap_command(plan, kernel_cmd), kw

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        rundir = getattr(self, "_sandbox_rundir", None)
        if rundir is not None and not restart:
            shutil.rmtree(rundir, ignore_errors=True)


class SandboxedExecute(Execute):  # type: ignore[misc]
    """nbgrader's Execute preprocessor, with sandboxed kernels unless COURSE_NO_SANDBOX is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if os.environ.get(NO_SANDBOX_ENV) != "1":
            kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)
