"""A JupyterLab server of our own for the browser tests, and the few UI steps they take.

The server listens on a free loopback port with a random token, runs from an empty HOME (no
user settings, workspaces or kernels leak in) and exposes ``window.jupyterapp`` so a test can
run JupyterLab commands by id, as JupyterLab's own UI tests (Galata) do.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page

START_TIMEOUT_S = 90
# A lesson runs in < 30 s on a 2-core laptop; CI machines are shared and slower.
RUN_ALL_TIMEOUT_MS = 300_000
KERNEL_IDLE_TIMEOUT_MS = 120_000

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these the closed network refuses Chromium's own background connections.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab's user settings under the empty HOME: no "get notified about Jupyter news?" toast
# over the screenshots, no update checks (the network is closed anyway).
_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _quiet_user_settings(home: Path) -> None:
    settings = home / ".jupyter" / "lab" / "user-settings"
    for name, values in _USER_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values), encoding="utf-8")


class JupyterLab:
    """``jupyter lab`` serving ``root`` (its working directory too: formgrader reads the
    ``nbgrader_config.py`` found there); ``stop`` ends it and its kernels."""

    def __init__(self, root: Path, home: Path, log: Path):
        self.root, self.port, self.token = Path(root), free_port(), secrets.token_hex(16)
        _quiet_user_settings(home)
        self.log = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", *self._options()],
            cwd=self.root,
            env=self._environment(home),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready(log)

    def _options(self) -> list[str]:
        options = [
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI runs as root
            options.append("--allow-root")
        return options

    @staticmethod
    def _environment(home: Path) -> dict[str, str]:
        env = dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
        # The Makefile exports MPLBACKEND=Agg for the test suite; a kernel that inherits it
        # draws no inline figures.
        env.pop("MPLBACKEND", None)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return env

    def _wait_until_ready(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.process.returncode}); see {log}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                    if response.status == 200:
                        return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {START_TIMEOUT_S} s; see {log}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# JavaScript run in the page; ``window.jupyterapp`` is JupyterLab's application object.
_NOTEBOOK_READY = """() => {
    const panel = window.jupyterapp?.shell?.currentWidget;
    return !!(panel?.context?.isReady && panel.sessionContext?.session?.kernel);
}"""
_START_RUN_ALL = """() => {
    window.normlabRunAll = undefined;
    window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => { window.normlabRunAll = ok; },
        err => { window.normlabRunAll = 'failed: ' + err; },
    );
}"""
_SAVE = """async () => {
    await window.jupyterapp.commands.execute('docmanager:save');
    return window.jupyterapp.shell.currentWidget.context.model.dirty;
}"""


# The notebook on screen: earlier tabs stay in the DOM, hidden (a workspace restores them).
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def wait_for_idle_kernel(page: Page) -> None:
    """The toolbar of the notebook on screen says its kernel is idle."""
    page.locator(f'{CURRENT} .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        timeout=KERNEL_IDLE_TIMEOUT_MS
    )


def open_notebook(page: Page, lab: JupyterLab, path: str) -> None:
    """Open ``path`` (relative to the server's root) in JupyterLab, alone (``?reset`` drops
    the tabs a workspace would restore); return once its kernel is idle."""
    page.goto(lab.url(f"lab/tree/{path}") + "&reset")
    page.wait_for_function(_NOTEBOOK_READY, timeout=KERNEL_IDLE_TIMEOUT_MS)
    wait_for_idle_kernel(page)


def run_all_and_save(page: Page) -> object:
    """Select the first cell, run "Run All Cells" (by command id: its label also matches
    "Restart Kernel and Run All"), wait until it finishes and the kernel is idle, save.

    Returns what the command resolved to: True when every cell ran without error.
    """
    page.locator(f"{CURRENT} .jp-Notebook .jp-Cell").first.click()
    page.evaluate(_START_RUN_ALL)
    page.wait_for_function(
        "() => window.normlabRunAll !== undefined", timeout=RUN_ALL_TIMEOUT_MS, polling=500
    )
    outcome = page.evaluate("() => window.normlabRunAll")
    wait_for_idle_kernel(page)
    dirty = page.evaluate(_SAVE)
    assert dirty is False, "the notebook still has unsaved changes after docmanager:save"
    return outcome
