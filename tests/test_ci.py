"""CI's entry point runs the whole test command from an empty home, as a new runner would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE = {
    # `make test` reports what it was run with: its environment and what its home holds
    "make": """#!/usr/bin/env python3
import json, os, sys
home = os.environ.get("HOME", "")
print("MAKE " + json.dumps({"args": sys.argv[1:], "env": dict(os.environ),
                           "home_entries": sorted(os.listdir(home)) if home else None}))
""",
    "chromium": "#!/bin/sh\necho 'Chromium (fake)'\n",
}


def test_ci_runs_make_test_with_an_empty_home_and_no_xdg_folders(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "my-home"),  # a used home, which CI must not see
        "XDG_CONFIG_HOME": "/somewhere/config",
        "XDG_CACHE_HOME": "/somewhere/cache",
        "XDG_DATA_HOME": "/somewhere/data",
        "XDG_RUNTIME_DIR": "/somewhere/runtime",
        "TMPDIR": str(tmp_path),
    }
    env.pop("CI", None)
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("MAKE "))
    seen = json.loads(line[len("MAKE ") :])
    assert seen["args"] == ["test"]
    home = seen["env"]["HOME"]
    assert home != env["HOME"] and home.startswith(str(tmp_path))
    assert seen["home_entries"] == []
    assert not {"XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"} & set(
        seen["env"]
    )
    assert seen["env"]["CI"] == "1"
    assert not Path(home).exists()  # the empty home goes when the run ends
