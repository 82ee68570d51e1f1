"""grader.jail: the in-kernel rules (private reads, outside writes, other processes) and the
fingerprint the integrity probe compares."""

from __future__ import annotations

import json
import subprocess
import sys

from grader.sandbox import compare


def test_the_jail_blocks_private_reads_outside_writes_and_other_processes(tmp_path):
    private, work = tmp_path / "private", tmp_path / "work"
    private.mkdir(), work.mkdir()
    (private / "secret.txt").write_text("hidden")
    probe = (
        "import json, os, sys\n"
        "from grader import jail\n"
        f"jail.install({{'writable': [{str(work)!r}], 'private': [{str(private)!r}]}})\n"
        "def attempt(f):\n"
        "    try:\n"
        "        f()\n"
        "        return 'done'\n"
        "    except PermissionError:\n"
        "        return 'blocked'\n"
        "print(json.dumps([\n"
        f"    attempt(lambda: open({str(private / 'secret.txt')!r}).read()),\n"
        f"    attempt(lambda: open({str(work / '..' / 'private' / 'secret.txt')!r}).read()),\n"
        f"    attempt(lambda: open({str(tmp_path / 'out.txt')!r}, 'w')),\n"
        f"    attempt(lambda: open({str(work / 'mine.txt')!r}, 'w').write('ok')),\n"
        "    attempt(lambda: os.kill(os.getppid(), 0)),\n"
        "    attempt(lambda: os.system('true')),\n"
        "    attempt(lambda: __import__('gc').get_objects()),\n"
        "]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        "blocked",
        "blocked",
        "blocked",
        "done",
        "blocked",
        "blocked",
        "blocked",
    ]
    assert not (tmp_path / "out.txt").exists() and (work / "mine.txt").read_text() == "ok"


def test_the_fingerprint_sees_patched_torch_utils_and_tracers():
    """What the probe compares: each cheat changes the fingerprint, restoring it does not."""
    import sys

    import torch.nn.functional as F

    import utils.diagnose
    from grader import jail

    imports = "import torch\nimport utils.diagnose\nimport no_such_module_at_all"
    baseline = json.loads(jail.fingerprint(imports, (), baseline=True))
    assert compare(baseline, json.loads(jail.fingerprint(imports))) == []
    import numpy as np
    import torch

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # a learner's settings are not tampering
    np.set_printoptions(precision=3)
    try:
        assert compare(baseline, json.loads(jail.fingerprint(imports))) == []
    finally:
        torch.set_default_dtype(dtype)
        np.set_printoptions(precision=8)
    cheats = {
        "torch.nn.functional.batch_norm was replaced or modified": (F, "batch_norm"),
        "utils.diagnose.assert_close was replaced or modified": (utils.diagnose, "assert_close"),
    }
    for finding, (module, name) in cheats.items():
        original = getattr(module, name)
        setattr(module, name, lambda *a, **k: None)
        try:
            assert finding in compare(baseline, json.loads(jail.fingerprint(imports)))
        finally:
            setattr(module, name, original)
    original = utils.diagnose.assert_close.__defaults__
    utils.diagnose.assert_close.__defaults__ = None
    try:
        assert compare(baseline, json.loads(jail.fingerprint(imports)))
    finally:
        utils.diagnose.assert_close.__defaults__ = original
    tracer = sys.gettrace()
    sys.settrace(lambda *args: None)
    try:
        assert "sys.gettrace was changed" in compare(
            baseline, json.loads(jail.fingerprint(imports))
        )
    finally:
        sys.settrace(tracer)
    assert compare(baseline, json.loads(jail.fingerprint(imports))) == []
