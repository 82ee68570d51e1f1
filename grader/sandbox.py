"""Confine a grading kernel: a memory limit, a file and process fence, no sign that it is being
graded, a wall-clock cap for the whole notebook, caps on its output and on its working copy's
size, and an integrity probe after every test cell.

nbgrader has no memory limit (its issue #1429) and tells student code it is being graded
through ``NBGRADER_EXECUTION``. The kernel manager here starts every kernel through
``grader.launcher``::

    python -I -m grader.launcher LIMIT_BYTES RULES_JSON -- python -m ipykernel_launcher ARGS...

which caps the kernel's data segment (RLIMIT_DATA: heap and anonymous mappings, so numpy and
torch allocations — an allocation over the limit raises MemoryError in the student's cell),
removes the grader's environment variables (``NBGRADER_EXECUTION``; ``MPLBACKEND``, so figures
render inline as in JupyterLab), installs ``grader.jail``'s audit hook (files outside the
working copy, other processes, ctypes symbol lookups) and then runs the IPython kernel in this
same process (isolated mode: no PYTHONPATH, no user site-packages).

``SandboxedExecute`` takes a fingerprint of what the tests rely on before the first cell runs
(``grader.jail.fingerprint``; the worker keeps it, out of the kernel's reach), takes another
after every test cell, and writes the differences — tampering — to ``integrity_report`` for the
worker. A notebook that runs past ``notebook_timeout`` seconds in all is stopped. The cells the
release tags ``learner-only`` (experiments, sweeps, figures; ``learner_only``) are not run: a
submitted cell is skipped only when nbgrader does not own it and its source is one of theirs.

Output is capped as it arrives (``OutputBudget``): nbclient keeps every output of every cell in
memory until the notebook is saved, so past ``CELL_OUTPUT_LIMIT`` in a cell or
``NOTEBOOK_OUTPUT_LIMIT`` in the notebook further output is dropped, not kept, and one note on
stderr says so (a test cell run in the kernel whose output was cut therefore scores 0). The
working copy is watched while the kernel runs (``grader.confine.watch_size``) and measured after
every cell: past ``size_limit`` bytes the kernel is killed and the notebook fails with
``SizeLimitError``.

POSIX only; elsewhere kernels start unconfined. docs/grading-safety.md says what this cannot
stop (C code, and code written against this very module).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError
from nbclient.util import ensure_async, run_sync
from nbformat.v4 import new_output
from nbgrader import utils as nbutils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer, List, Unicode

from grader import checker, confine, zygote
from grader.kernel_side import CHANNEL_ENV
from grader.markup import is_learner_only

PROBE_TIMEOUT = 30  # seconds the kernel gets to answer an integrity probe
MAX_FINDINGS = 5
SERVE = "__import__('grader.kernel_side', fromlist=['serve']).serve()"
"""What the kernel runs while the checker runs a test cell: it answers the checker's calls."""
SERVE_GRACE = 10  # seconds the kernel gets to stop serving once the checker is done
MIB = 2**20
CELL_OUTPUT_LIMIT = MIB
"""Characters of output one cell keeps (text, images, HTML, widget state, as they arrive). A
lesson's inline figure is about 50 KB and its prints far less; a cell past this is flooding,
and nbclient would hold all of it in memory (1.2 GB of display output once took the grader to
5.2 GB)."""
NOTEBOOK_OUTPUT_LIMIT = 8 * MIB
"""Characters of output a whole notebook keeps: room for every figure of the longest lesson,
and a bound on the grader's memory per notebook whatever the number of cells."""
KEPT_ERROR = 2000
"""Characters of an error output's message and traceback kept once the cell's output was cut
(an error always scores the cell 0, so it is never dropped, only shortened)."""
OUTPUT_MESSAGES = frozenset(
    ("stream", "display_data", "execute_result", "error", "update_display_data")
    + ("comm_open", "comm_msg")
)
"""The iopub messages whose content nbclient keeps: outputs, and widget state."""


class NotebookTimeoutError(RuntimeError):
    """The notebook as a whole ran past its wall-clock cap."""


class SizeLimitError(RuntimeError):
    """The kernel's working copy grew past its size cap."""


class OutputBudget:
    """What a notebook's cells may still keep of their output, counted as it arrives.

    ``admit(msg_type, content, cell_index)`` returns the content to keep, or None to drop the
    message. The first message that would take a cell past ``cell_limit`` or the notebook past
    ``notebook_limit`` cuts that cell: of it only the head of a text stream that fits is kept,
    everything after it in the cell is dropped, and ``note(cell_index)`` returns, once, the note
    to add. One error output per cut cell is still kept, shortened: an error scores a test cell
    0 and must never be lost.
    """

    def __init__(self, cell_limit: int = CELL_OUTPUT_LIMIT, notebook_limit=NOTEBOOK_OUTPUT_LIMIT):
        self.cell_limit, self.notebook_limit = cell_limit, notebook_limit
        self.total = 0
        self.cells: dict[int, int] = {}
        self.cut: dict[int, str] = {}
        self.noted: set[int] = set()
        self.errors_kept: set[int] = set()

    def admit(self, msg_type: str, content: dict, cell_index: int) -> dict | None:
        if cell_index not in self.cut:
            size, in_cell = content_size(content), self.cells.get(cell_index, 0)
            room = min(self.cell_limit - in_cell, self.notebook_limit - self.total)
            if size <= room:
                self.cells[cell_index], self.total = in_cell + size, self.total + size
                return content
            if self.cell_limit - in_cell <= self.notebook_limit - self.total:
                self.cut[cell_index] = f"this cell's output passed {self.cell_limit // MIB} MiB"
            else:
                limit = self.notebook_limit // MIB
                self.cut[cell_index] = f"the notebook's output passed {limit} MiB"
            if msg_type == "stream" and room > 0:
                self.cells[cell_index], self.total = in_cell + room, self.total + room
                return {**content, "text": str(content.get("text", ""))[:room]}
        if msg_type == "error" and cell_index not in self.errors_kept:
            self.errors_kept.add(cell_index)
            return shortened_error(content)
        return None

    def is_cut(self, cell_index: int) -> bool:
        return cell_index in self.cut

    def note(self, cell_index: int):
        """The truncation note (a stderr stream output) of a cell just cut, once; else None."""
        if cell_index not in self.cut or cell_index in self.noted:
            return None
        self.noted.add(cell_index)
        text = f"[output cut: {self.cut[cell_index]}; the rest of it was not kept]\n"
        return new_output("stream", name="stderr", text=text)


def content_size(value) -> int:
    """Characters of the strings in a message's content (nested dicts and lists included)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(content_size(k) + content_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(content_size(v) for v in value)
    return 8


def shortened_error(content: dict) -> dict:
    """An error message's content with its value and traceback cut to ``KEPT_ERROR`` characters."""
    traceback = "\n".join(str(line) for line in content.get("traceback") or [])
    return {
        "ename": str(content.get("ename", ""))[:200],
        "evalue": str(content.get("evalue", ""))[:KEPT_ERROR],
        "traceback": [traceback[-KEPT_ERROR:]],
    }


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels start through the sandbox launcher."""

    memory_limit = Integer(0, help="Data-segment limit of the kernel in bytes; 0: none").tag(
        config=True
    )
    jail_rules = Unicode("{}", help="JSON rules for grader.jail (private, allowed paths)").tag(
        config=True
    )

    channel_fd = Integer(-1, help="The kernel's end of the checker's channel; -1: none")

    warm = Bool(
        True,
        help="Fork grading kernels from a warm zygote (grader.zygote) where the system allows; "
        "NORMLAB_WARM_KERNELS=0 turns it off everywhere",
    ).tag(config=True)

    @property
    def kernel_spec(self):
        """The kernel's spec, launched by ``grader.zygote``'s provisioner (a warm kernel forked
        per notebook) unless ``warm`` is off or the provisioner is not installed."""
        spec = super().kernel_spec
        if spec is not None and self.warm and zygote.wanted():
            spec.metadata = {
                **spec.metadata,
                "kernel_provisioner": {"provisioner_name": zygote.PROVISIONER, "config": {}},
            }
        return spec

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        if self.channel_fd >= 0:
            kw["pass_fds"] = (self.channel_fd,)
            kw["env"] = {**kw.get("env", os.environ), CHANNEL_ENV: str(self.channel_fd)}
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments=extra_arguments)
        if os.name != "posix":  # no rlimits nor audit-hook launcher: the kernel runs unconfined
            return cmd
        return [
            sys.executable,
            "-I",
            "-m",
            "grader.launcher",
            str(self.memory_limit),
            self.jail_rules,
            "--",
            *cmd,
        ]


class SandboxedExecute(Execute):
    """nbgrader's Execute with kernels from SandboxKernelManager, a notebook wall-clock cap and
    an integrity probe after every test cell.

    Execute passes its kernel manager class as a constructor argument, which beats any
    configuration, so the class is swapped here.
    """

    notebook_timeout = Float(0, help="Seconds the whole notebook may run; 0: no cap").tag(
        config=True
    )
    integrity_report = Unicode("", help="Where to write the integrity findings (JSON)").tag(
        config=True
    )
    checker = Bool(False, help="Run test cells in the trusted checker, not the kernel").tag(
        config=True
    )
    record_path = Unicode("", help="Where to write the checker's verdicts (JSON)").tag(config=True)
    size_limit = Integer(0, help="Bytes the kernel's working copy may hold; 0: no cap").tag(
        config=True
    )
    learner_only = List(
        Unicode(),
        help="Sources of the release's learner-only cells: a plain code cell with one of them is "
        "not run (grader.markup.is_learner_only)",
    ).tag(config=True)

    def __init__(self, **kwargs):
        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(**kwargs)

    def preprocess(self, nb, resources=None, km=None):
        self._imports, self._names = locked_imports(nb)
        self._skipped = frozenset(self.learner_only)
        self._baseline, self._findings = None, []
        self._record: dict[str, checker.Verdict] = {}
        self._started = time.monotonic()
        self._link = self._kernel_end = None
        self._budget = OutputBudget()
        self._workdir = (resources or {}).get("metadata", {}).get("path") or os.getcwd()
        self._oversize, self._stop_watch = 0, None
        if self.checker:
            ours, theirs = socket.socketpair()
            self._link, self._kernel_end = checker.KernelLink(ours), theirs
            self._trusted = checker.trusted_namespace(self._imports)
        try:
            try:
                nb, resources = super().preprocess(nb, resources, km)
            except SizeLimitError:
                raise
            except Exception as exc:  # a kernel killed for its size dies like any other
                self._raise_if_oversize(exc)
                raise
            self._raise_if_oversize(None)
            if self.checker:
                resources["normlab_record"] = dict(self._record)
            return nb, resources
        finally:
            if self._stop_watch is not None:
                self._stop_watch.set()
            self._close_channel()
            if self.integrity_report:
                Path(self.integrity_report).write_text(json.dumps(self._findings))
            if self.record_path:
                record = {k: v.__dict__ for k, v in self._record.items()}
                Path(self.record_path).write_text(json.dumps(record))

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._kernel_end is not None:
            km.channel_fd = self._kernel_end.fileno()
        return km

    async def async_start_new_kernel(self, **kwargs):
        await super().async_start_new_kernel(**kwargs)
        if self._kernel_end is not None:
            # the kernel holds its end now; ours closed, its death reads as the channel's end
            self._kernel_end.close()
            self._kernel_end = None
        if self.size_limit and self._stop_watch is None:
            self._stop_watch = confine.watch_size(self._workdir, self.size_limit, self._too_big)

    start_new_kernel = run_sync(async_start_new_kernel)  # as execute_cell: the parent binds its own

    def _too_big(self, size: int) -> None:
        """The size watch's call (from its thread): note the size and kill the kernel."""
        self._oversize = size
        process = getattr(self.km.provisioner, "process", None) if self.km else None
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()

    def _raise_if_oversize(self, cause: BaseException | None) -> None:
        """SizeLimitError if the working copy went past its cap, while the kernel ran or now."""
        if self.size_limit and not self._oversize:
            size = confine.tree_size(self._workdir)
            self._oversize = size if size > self.size_limit else 0
        if self._oversize:
            raise SizeLimitError(
                # rounded up: just past the cap never reads "took 256 MiB; the limit is 256"
                f"the notebook's files took {math.ceil(self._oversize / MIB)} MiB in its "
                f"working folder; the limit is {self.size_limit / MIB:.0f} MiB"
            ) from cause

    def process_message(self, msg, cell, cell_index):
        """nbclient's handling, with output past the caps dropped as it arrives."""
        msg_type = msg["msg_type"]
        if msg_type == "clear_output" and self._budget.is_cut(cell_index):
            return None  # a cut cell keeps its note
        if msg_type not in OUTPUT_MESSAGES:
            return super().process_message(msg, cell, cell_index)
        content = self._budget.admit(msg_type, msg["content"], cell_index)
        kept = None
        if content is not None:
            kept = super().process_message({**msg, "content": content}, cell, cell_index)
        note = self._budget.note(cell_index)
        if note is not None:
            cell.outputs.append(note)
            self.clear_before_next_output = False  # a pending clear would take the note
        return kept

    def _close_channel(self) -> None:
        for end in (self._kernel_end, self._link):
            if end is not None:
                end.close()
        self._link = self._kernel_end = None

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if self.checker and _is_test_cell(cell):
            return await self._execute_in_checker(cell)
        if self._baseline is None and self.integrity_report and not self.checker:
            self._baseline = await self._probe(baseline=True)
            if self._baseline is None:
                self._findings.append("the integrity probe could not take a baseline")
                self._baseline = {}
        if is_learner_only(cell, self._skipped):
            cell.outputs, cell.execution_count = [], None
            return cell
        if cell.cell_type == "code":
            self._check_notebook_time()
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        self._raise_if_oversize(None)
        probing = self.integrity_report and not self.checker
        if probing and cell.cell_type == "code" and nbutils.is_grade(cell):
            if self._baseline and not self._findings:
                now = await self._probe(baseline=False)
                where = cell.metadata.nbgrader.get("grade_id", f"cell {cell_index}")
                if now is None:
                    self._findings.append(f"after {where}: the integrity probe got no answer")
                else:
                    self._findings += [f"after {where}: {f}" for f in compare(self._baseline, now)]
        return cell

    execute_cell = run_sync(async_execute_cell)  # the parent binds its own coroutine here

    async def _execute_in_checker(self, cell):
        """Run a test cell in the trusted checker while the kernel serves its calls; the
        cell's outputs and the record hold the checker's verdict, nothing from the kernel."""
        self._check_notebook_time()
        grade_id = cell.metadata.nbgrader.get("grade_id", "")
        msg_id = await ensure_async(
            self.kc.execute(SERVE, silent=True, store_history=False, allow_stdin=False)
        )
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(
            None, checker.run_cell, self._link, cell.source, self._trusted, float(self.timeout)
        )
        if verdict.ename == checker.TIMED_OUT:
            await ensure_async(self.km.interrupt_kernel())
        try:
            await asyncio.wait_for(self.async_wait_for_reply(msg_id), SERVE_GRACE)
        except TimeoutError:
            raise CellTimeoutError(
                f"{grade_id}: the code under test kept running after the cell's time limit"
            ) from None
        self._record[grade_id] = verdict
        cell.outputs = _verdict_outputs(verdict)
        cell.execution_count = None
        self._raise_if_oversize(None)
        return cell

    def _check_notebook_time(self) -> None:
        elapsed = time.monotonic() - self._started
        if self.notebook_timeout and elapsed > self.notebook_timeout:
            raise NotebookTimeoutError(
                f"the notebook ran longer than its {self.notebook_timeout:g} s wall-clock limit"
            )

    async def _probe(self, baseline: bool) -> dict | None:
        expression = (
            f"__import__('grader.jail').jail.fingerprint({self._imports!r}, "
            f"{tuple(self._names)!r}, {baseline!r})"
        )
        try:
            msg_id = await _maybe_await(
                self.kc.execute(
                    "", silent=True, store_history=False, user_expressions={"fp": expression}
                )
            )
            reply = await asyncio.wait_for(self.async_wait_for_reply(msg_id), PROBE_TIMEOUT)
            answer = reply["content"]["user_expressions"]["fp"]
            if answer.get("status") != "ok":
                return None
            return json.loads(ast.literal_eval(answer["data"]["text/plain"]))
        except Exception:  # no answer, a malformed one, a dead kernel: all untrustworthy
            return None


def _is_test_cell(cell) -> bool:
    return cell.cell_type == "code" and nbutils.is_grade(cell) and not nbutils.is_solution(cell)


def _verdict_outputs(verdict: checker.Verdict) -> list:
    """The outputs a test cell shows: what the checks printed, and their failure."""
    outputs = []
    if verdict.printed:
        outputs.append(new_output("stream", name="stdout", text=verdict.printed))
    if not verdict.passed:
        error = new_output("error", ename=verdict.ename, evalue=verdict.evalue)
        error.traceback = [verdict.message]
        outputs.append(error)
    return outputs


async def _maybe_await(value):
    return await value if asyncio.iscoroutine(value) else value


def locked_imports(nb) -> tuple[str, list[str]]:
    """The import statements of the notebook's locked cells (set-up and test cells, restored
    from the gradebook before execution, hidden tests included) and the names the set-up cells'
    imports bind.

    The probe's baseline runs every statement, so each module a test will use is fingerprinted
    before any student code runs, even one only a hidden test imports; only the set-up cells'
    names are checked as bindings (a test cell's names do not exist until it has run).
    """
    statements, names = [], []
    for cell in nb.cells:
        if cell.cell_type != "code" or not nbutils.is_locked(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                if any(alias.name == "*" for alias in node.names):
                    continue
                statements.append(ast.unparse(node))
                if not nbutils.is_grade(cell):
                    names += [(a.asname or a.name).split(".")[0] for a in node.names]
    return "\n".join(dict.fromkeys(statements)), sorted(set(names))


def compare(baseline: dict, now: dict) -> list[str]:
    """What changed since the baseline fingerprint, one readable line each (at most a few)."""
    findings = []
    for module, attributes in baseline.get("modules", {}).items():
        current = now.get("modules", {}).get(module)
        if current is None:
            findings.append(f"module {module} was unloaded")
            continue
        for name, token in attributes.items():
            if name not in current:
                findings.append(f"{module}.{name} was deleted")
            elif current[name] != token:
                findings.append(f"{module}.{name} was replaced or modified")
    for module, identity in baseline.get("identity", {}).items():
        if module in now.get("identity", {}) and now["identity"][module] != identity:
            findings.append(f"sys.modules[{module!r}] was replaced")
    for name, identity in baseline.get("bindings", {}).items():
        if now.get("bindings", {}).get(name) != identity:
            findings.append(f"{name!r}, imported by a locked cell, was rebound")
    for point, ids in baseline.get("hooks", {}).items():
        if now.get("hooks", {}).get(point) != ids:
            findings.append(f"{point} was changed")
    return findings[:MAX_FINDINGS]
