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

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from course.modules import MODULE_DIR, Course, discover

NO_SANDBOX_ENV = "COURSE_NO_SANDBOX"
CUMULATIVE_ENV = "COURSE_CUMULATIVE_PACKAGES"
GiB, MiB = 1024**3, 1024**2


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's grading kernel and everything it starts."""

    memory_bytes: int = 4 * GiB  # address space per process (prlimit); NumPy reserves more than it touches
    sandbox_memory_bytes: int = 2 * GiB  # every process of the submission together, tmpfs pages included (cgroup)
    processes: int = 64  # processes of the submission together (cgroup pids), else per user (prlimit)
    cpu_seconds: int = 900
    file_bytes: int = 64 * MiB
    scratch_bytes: int = 256 * MiB  # each of the working folder, /tmp and /dev/shm (tmpfs)
    notebook_seconds: int = 180  # wall clock for the whole notebook (honest ones take seconds), beside per-cell
    cell_output_bytes: int = 1 * MiB  # output kept per cell; the rest is dropped as it arrives
    notebook_output_bytes: int = 8 * MiB  # output kept per notebook
    message_bytes: int = 16 * MiB  # a larger message from the kernel is refused by the socket itself


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
    """What one grading kernel can see and use: nothing but what is listed here."""

    workdir: Path
    rundir: Path
    exposed: list[Path] = field(default_factory=list)  # read-only: the interpreter, the environment, data
    package: Path | None = None  # the reference tinytorch, read-only, with the masked modules empty
    masked: list[Path] = field(default_factory=list)
    caches: list[Path] = field(default_factory=list)  # __pycache__ folders of the package: empty inside
    pythonpath: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)


# System files the interpreter and its libraries read; nothing else of /etc is shown.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group",
             "hosts", "mime.types", "ssl/certs", "matplotlibrc")  # fmt: skip
# Environment variables a kernel inherits from the grader; every other one (tokens, database URLs) stays out.
KERNEL_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LANGUAGE", "TZ", "TERM", "PYTHONHASHSEED")


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
    exposed = [Path("/usr")]
    for prefix in (sys.prefix, sys.base_prefix):
        resolved = Path(prefix).resolve()
        if not any(resolved == e or e in resolved.parents for e in exposed):
            exposed.append(resolved)
    exposed += [root / "datasets" for root in {course_root, package.parent} if (root / "datasets").is_dir()]
    number = _graded_module_number(workdir)
    masked: list[Path] = []
    if cumulative_package is not None:
        masked = sorted(p for p in package.rglob("*.py") if p.name != "__init__.py")
    elif number is not None and (course_root / "source").is_dir():
        for module in discover(Course(course_root)):
            exported = module.exported_file(package)
            if module.number >= number and exported is not None and exported.is_file():
                masked.append(exported)
    masked += [  # bytecode or copies beside a masked source (tensor.pyc, tensor.cpython-311.pyc)
        other for m in list(masked) for other in m.parent.glob(f"{m.stem}.*") if other != m and other.is_file()
    ]
    caches = sorted(p for p in package.rglob("__pycache__") if p.is_dir())
    return SandboxPlan(
        workdir=workdir,
        rundir=rundir,
        exposed=exposed,
        package=package,
        masked=masked,
        caches=caches,
        pythonpath=[cumulative_package] if cumulative_package else [],
    )


def _system_view() -> list[str]:
    """/bin, /lib, ... as the host has them (symbolic links into /usr on merged systems), and a few /etc files."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def kernel_environment(inherited: dict[str, str], plan: SandboxPlan) -> dict[str, str]:
    """The kernel's whole environment: an allow-list of the grader's variables, and the sandbox's own."""
    env = {key: inherited[key] for key in KERNEL_ENV if key in inherited}
    env.update(
        {
            "HOME": str(plan.workdir),
            "TMPDIR": "/tmp",
            "JUPYTER_RUNTIME_DIR": str(plan.rundir),
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "MPLBACKEND": "Agg",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
    )
    if plan.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(map(str, plan.pythonpath))
    return env


def _running_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all, not the kernel's alone)."""
    import psutil

    me = os.getuid()
    count = 0
    for process in psutil.process_iter(["uids"]):
        uids = process.info.get("uids")
        count += bool(uids and uids.real == me)
    return count


def bwrap_command(plan: SandboxPlan, kernel_cmd: list[str], *, cgroup: bool = False) -> list[str]:
    """``kernel_cmd`` wrapped in bubblewrap and prlimit according to ``plan``.

    The sandbox starts from an empty root: only the folders listed in ``plan`` are shown, read-only,
    plus size-limited tmpfs for the working folder, /tmp and /dev/shm, and the private folder of the
    kernel's sockets. There is no /proc (no /proc/self/mem to patch, no view of other processes).
    """
    limits = plan.limits
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    cmd += ["--dev", "/dev"]
    for scratch in ("/tmp", "/dev/shm"):  # first: folders bound below may live under /tmp
        cmd += ["--size", str(limits.scratch_bytes), "--tmpfs", scratch]
    cmd += _system_view()
    for exposed in plan.exposed:
        cmd += ["--ro-bind", str(exposed), str(exposed)]
    if plan.package is not None:
        cmd += ["--ro-bind", str(plan.package), str(plan.package)]
        for cache in plan.caches:
            cmd += ["--tmpfs", str(cache), "--remount-ro", str(cache)]
        for masked in plan.masked:
            cmd += ["--ro-bind", "/dev/null", str(masked)]
    for extra in plan.pythonpath:
        cmd += ["--ro-bind", str(extra), str(extra)]
    cmd += ["--bind", str(plan.rundir), str(plan.rundir)]
    cmd += ["--size", str(limits.scratch_bytes), "--tmpfs", str(plan.workdir), "--chdir", str(plan.workdir)]
    cmd += ["--remount-ro", "/"]
    for key, value in kernel_environment(dict(os.environ), plan).items():
        cmd += ["--setenv", key, value]
    nproc = limits.processes if cgroup else _running_processes() + limits.processes
    cmd += ["prlimit", f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}"]
    cmd += [f"--nproc={nproc}", f"--fsize={limits.file_bytes}", "--"]
    return cmd + kernel_cmd


class Cgroup:
    """One submission's cgroup: memory (tmpfs pages included) and process count for all its processes together.

    cgroup v2 (``memory.max``, ``pids.max``) or v1 (the ``memory`` and ``pids`` hierarchies), created
    under this process's own cgroup; ``Cgroup.create`` returns None where neither is writable, and
    the sandbox falls back to per-process prlimit limits (weaker: forked processes add up).
    """

    def __init__(self, folders: list[Path], v2: bool) -> None:
        self.folders = folders
        self.v2 = v2

    @staticmethod
    def _own(controller: str) -> str | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
        return None

    @classmethod
    def create(cls, limits: Limits) -> Cgroup | None:
        import secrets

        name = f"tinytorch-grading-{os.getpid()}-{secrets.token_hex(4)}"
        base = Path("/sys/fs/cgroup")
        made: list[Path] = []
        try:
            if (base / "cgroup.controllers").is_file():  # v2
                own = cls._own("")
                folder = base / (own or "/").lstrip("/") / name
                folder.mkdir()
                made.append(folder)
                (folder / "memory.max").write_text(str(limits.sandbox_memory_bytes))
                (folder / "memory.swap.max").write_text("0") if (folder / "memory.swap.max").exists() else None
                (folder / "pids.max").write_text(str(limits.processes))
                return cls(made, v2=True)
            for controller, settings in (
                ("memory", {"memory.limit_in_bytes": limits.sandbox_memory_bytes}),
                ("pids", {"pids.max": limits.processes}),
            ):
                own = cls._own(controller)
                if own is None:
                    raise OSError(f"no {controller} cgroup")
                folder = base / controller / own.lstrip("/") / name
                folder.mkdir()
                made.append(folder)
                for key, value in settings.items():
                    (folder / key).write_text(str(value))
                if controller == "memory" and (folder / "memory.memsw.limit_in_bytes").exists():
                    (folder / "memory.memsw.limit_in_bytes").write_text(str(limits.sandbox_memory_bytes))
            return cls(made, v2=False)
        except OSError:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            return None

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started by a shell that first moves itself into the cgroup (so its children are counted)."""
        script = 'for g in "$@"; do [ "$g" = -- ] && break; echo $$ > "$g/cgroup.procs" || exit 97; done; '
        script += 'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", script, "cgroup-enter", *map(str, self.folders), "--", *cmd]

    def peak_memory(self) -> int | None:
        for folder in self.folders:
            for key in ("memory.peak", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError, ValueError):
                    return int((folder / key).read_text())
        return None

    def close(self) -> None:
        """Kill whatever is left in the cgroup and remove it."""
        import signal

        for folder in self.folders:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _runtime_parent() -> str | None:
    """Where kernels' socket folders go: /dev/shm when writable, so a kernel's writes there count as its memory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start inside the sandbox of their working folder."""

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        workdir = Path(kw.get("cwd") or os.getcwd())
        self._sandbox_rundir: Path | None = Path(tempfile.mkdtemp(prefix="tt-kernel-", dir=_runtime_parent()))
        self.transport = "ipc"
        self.ip = str(self._sandbox_rundir / "kernel")
        self.connection_file = str(self._sandbox_rundir / "connection.json")
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        own_packages = os.environ.get(CUMULATIVE_ENV)  # <folder>/<student>/tinytorch, one per student
        own = Path(own_packages) / workdir.resolve().parent.name if own_packages else None
        plan = plan_for(workdir, self._sandbox_rundir, own)
        self._sandbox_cgroup = Cgroup.create(plan.limits)
        kw["env"] = {key: os.environ[key] for key in ("PATH",) if key in os.environ}  # bwrap --clearenv anyway
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel never writes onto the grader's streams
        kw["stdin"] = subprocess.DEVNULL
        kernel_cmd = [*kernel_cmd, "--IPKernelApp.capture_fd_output=False"]  # fd 1 and 2 go nowhere, not to iopub
        command = bwrap_command(plan, kernel_cmd, cgroup=self._sandbox_cgroup is not None)
        if self._sandbox_cgroup is not None:
            command = self._sandbox_cgroup.wrap(command)
        return command, kw

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self.release_sandbox()

    def release_sandbox(self) -> None:
        """Kill what is left of the sandbox, remove its cgroup and socket folder (safe to call twice).

        nbclient shuts down only a kernel that is still alive, so the grader also calls this after
        each notebook: a kernel that died leaves nothing behind either.
        """
        cgroup = getattr(self, "_sandbox_cgroup", None)
        if cgroup is not None:
            self.sandbox_peak_memory = cgroup.peak_memory()
            cgroup.close()
            self._sandbox_cgroup = None
        rundir = getattr(self, "_sandbox_rundir", None)
        if rundir is not None:
            shutil.rmtree(rundir, ignore_errors=True)
            self._sandbox_rundir = None
