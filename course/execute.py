"""The grading Execute preprocessor: sandboxed kernels, proof that each test cell ran, limits per notebook.

It replaces nbgrader's ``Execute`` in ``nbgrader_config.py`` and runs in the nbgrader process,
out of the student's reach. For each notebook it

* starts the kernel in the sandbox (``course.sandbox``) unless ``COURSE_NO_SANDBOX=1``;
* **proof of completion**: appends to every test cell, just before it runs, one line holding a
  fresh random token (a string literal, so the kernel shows it as the cell's result). The token
  exists only in that cell's source, sent when the cell runs, after all the student's cells ran;
  the policy (``course.policy``) keeps the student's code from reading the cell being run. After
  the cell, the token must be the cell's only result and no error may be shown: otherwise the cell
  gets an error output and 0 points, whatever the kernel said, and the notebook needs attention.
  A hook that swallows the error, rewrites the test into ``pass`` or publishes a fake result
  cannot produce the token, since it is the last line and only runs when everything above it did;
* caps output in bytes as it arrives (per cell and per notebook), and the size of one message
  from the kernel (a larger one is refused by the socket);
* bounds the notebook's wall-clock time, beside nbgrader's per-cell timeout;
* writes what happened (a dead kernel, timeouts, missing proofs, truncated output) to a status
  file per student in ``COURSE_STATUS_DIR``, a folder of the grader that no kernel can see.
  ``course autograde`` reads per-student results from there, from the graded notebook and from
  the gradebook, never from a stream a kernel can write to.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from course.notebooks import is_test
from course.sandbox import NO_SANDBOX_ENV, Limits, SandboxKernelManager

STATUS_ENV = "COURSE_STATUS_DIR"
PROOF_MISSING = "GradingProofMissing"
NOTEBOOK_TIME = "NotebookTimeLimit"
TRUNCATED = "[output over the grading limit was dropped]"


def _proof(token: str) -> str:
    return repr(token)


def _size(content: dict[str, Any]) -> int:
    text = content.get("text")
    if isinstance(text, str):
        return len(text)
    return sum(
        len(v) if isinstance(v, str) else len(json.dumps(v)) for v in (content.get("data") or {}).values()
    ) + sum(len(str(line)) for line in content.get("traceback") or [])


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class SandboxedExecute(Execute):  # type: ignore[misc]
    """nbgrader's Execute with sandboxed kernels, proofs of completion, output caps and a notebook time limit."""

    notebook_timeout = Integer(Limits.notebook_seconds, help="wall-clock seconds for the whole notebook").tag(
        config=True
    )
    cell_output_bytes = Integer(Limits.cell_output_bytes, help="output kept per cell").tag(config=True)
    notebook_output_bytes = Integer(Limits.notebook_output_bytes, help="output kept per notebook").tag(config=True)
    message_bytes = Integer(Limits.message_bytes, help="largest message accepted from a kernel").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if os.environ.get(NO_SANDBOX_ENV) != "1":
            kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)
        self.limits = replace(
            Limits(),
            notebook_seconds=self.notebook_timeout,
            cell_output_bytes=self.cell_output_bytes,
            notebook_output_bytes=self.notebook_output_bytes,
            message_bytes=self.message_bytes,
        )

    def create_kernel_manager(self) -> Any:
        """The sandbox's kernel manager, whatever ``kernel_manager_class`` the configuration gives ``Execute``.

        nbconvert re-reads the configuration before each notebook, and a ``c.Execute.kernel_manager_class``
        meant for ``nbgrader validate`` would otherwise apply here too and grade unsandboxed.
        """
        if os.environ.get(NO_SANDBOX_ENV) != "1":
            self.kernel_manager_class = SandboxKernelManager
        manager = super().create_kernel_manager()
        self._manager = manager
        return manager

    # -- the notebook -------------------------------------------------------------------------
    def preprocess(self, nb: Any, resources: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._status: dict[str, Any] = {
            "error": None, "timeouts": [], "no_proof": [], "time_limit": False, "truncated": False, "peak_memory": None,
        }  # fmt: skip
        self._cell_timeout: int | None = getattr(self, "timeout", None)
        self._deadline = time.monotonic() + self.limits.notebook_seconds
        self._notebook_bytes = 0
        self._student = str(((resources or {}).get("nbgrader") or {}).get("student") or "")
        try:
            result = super().preprocess(nb, resources, *args, **kwargs)
        except BaseException as error:
            self._status["error"] = type(error).__name__
            raise
        finally:
            self.timeout = self._cell_timeout
            manager = getattr(self, "_manager", None)
            if isinstance(manager, SandboxKernelManager):
                manager.release_sandbox()  # also when the kernel died: nbclient shuts down live kernels only
            self._status["peak_memory"] = getattr(manager, "sandbox_peak_memory", None)
            self._write_status()
        return result

    def _write_status(self) -> None:
        folder = os.environ.get(STATUS_ENV)
        if not folder or not self._student:
            return
        path = Path(folder) / f"{self._student}.json"
        path.write_text(json.dumps(self._status), encoding="utf-8")

    def _limit_sockets(self) -> None:
        """Refuse any single message above the limit before it is read into memory."""
        import zmq

        manager = getattr(self, "km", None)
        context = getattr(manager, "context", None)
        if context is not None:
            context.setsockopt(zmq.MAXMSGSIZE, self.limits.message_bytes)

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        await super().async_start_new_kernel(**kwargs)
        self._limit_sockets()

    # -- each cell ----------------------------------------------------------------------------
    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        if cell.cell_type != "code":
            return cell, resources
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            if not self._status["time_limit"]:
                self._status["time_limit"] = True
            cell.outputs = [
                _error(NOTEBOOK_TIME, f"not run: the notebook passed its {self.limits.notebook_seconds} s limit")
            ]
            return cell, resources
        self.timeout = max(1, int(min(self._cell_timeout or remaining, remaining)))
        self._cell_bytes = 0
        self._stderr_dropped = False
        if not is_test(cell):
            cell, resources = self._run(cell, resources, index)
            self._note_timeout(cell)
            return cell, resources
        token = f"tinytorch-proof-{secrets.token_hex(16)}"
        source = cell.source
        cell.source = f"{source}\n{_proof(token)}"
        try:
            cell, resources = self._run(cell, resources, index)
        finally:
            cell.source = source
        self._note_timeout(cell)
        self._check_proof(cell, token)
        return cell, resources

    def _run(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        try:
            result: tuple[Any, Any] = super().preprocess_cell(cell, resources, index)
        except BaseException:
            if time.monotonic() >= self._deadline - 1:
                self._status["time_limit"] = True  # the cell was cut short by the notebook's limit
            raise
        return result

    def _note_timeout(self, cell: Any) -> None:
        if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            self._status["timeouts"].append(cell.metadata.get("nbgrader", {}).get("grade_id") or "a cell")

    def _check_proof(self, cell: Any, token: str) -> None:
        """Keep the cell's credit only if its last line ran: its token is its only result and nothing failed."""
        proof = _proof(token)
        results = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
        kept = [o for o in cell.outputs if o.get("output_type") != "execute_result"]
        failed = any(o.get("output_type") == "error" for o in kept) or any(
            o.get("output_type") == "stream" and o.get("name") == "stderr" for o in kept
        )
        proven = len(results) == 1 and results[0].get("data", {}).get("text/plain") == proof
        cell.outputs = kept
        if self._stderr_dropped and not failed:
            cell.outputs.insert(0, _error("StderrOutput", "the cell wrote to stderr (dropped over the output limit)"))
        elif not proven and not failed:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") or "a test cell"
            self._status["no_proof"].append(grade_id)
            cell.outputs.insert(
                0, _error(PROOF_MISSING, "the test cell did not run to its end, whatever the kernel reported: 0 points")
            )

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        """Keep output up to the byte limits; drop the rest as it arrives and say so once."""
        size = _size(msg.get("content") or {})
        cell_bytes = getattr(self, "_cell_bytes", 0) + size
        self._cell_bytes = cell_bytes
        self._notebook_bytes = getattr(self, "_notebook_bytes", 0) + size
        if cell_bytes > self.limits.cell_output_bytes or self._notebook_bytes > self.limits.notebook_output_bytes:
            if (msg.get("content") or {}).get("name") == "stderr":
                self._stderr_dropped = True  # nbgrader gives 0 to a test cell with stderr: so does the proof check
            if msg.get("msg_type") in ("execute_result", "error"):
                return super().output(outs, msg, display_id, cell_index)  # small by the message limit; judged above
            if not self._status["truncated"] or not any(o.get("text") == TRUNCATED for o in outs):
                self._status["truncated"] = True
                if not any(o.get("text") == TRUNCATED for o in outs):
                    outs.append(NotebookNode(output_type="stream", name="stdout", text=TRUNCATED))
            return None
        return super().output(outs, msg, display_id, cell_index)
