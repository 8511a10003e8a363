"""Kernels that talk to their client over Unix sockets in a private folder (the ipc transport).

Over TCP, ipykernel warns on every start that the connection is not encrypted, a line a learner
cannot act on; Unix sockets in a folder only this user can open need no encryption, and grading
kernels must use them anyway (the sandbox has no network). ``course check``, ``nbgrader validate``
and JupyterLab's Validate button use these kernels; ``course.sandbox`` builds on them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager


class PrivateIpcKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel listens on Unix sockets in a fresh private folder, removed afterwards."""

    rundir: Path | None = None

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        self.rundir = Path(tempfile.mkdtemp(prefix="tt-kernel-"))  # mode 0700
        self.transport = "ipc"
        self.ip = str(self.rundir / "kernel")
        self.connection_file = str(self.rundir / "connection.json")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self.rundir is not None and not restart:
            shutil.rmtree(self.rundir, ignore_errors=True)
