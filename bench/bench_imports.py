"""Start-up CPU of a grading process: importing what a worker imports, with and without the
optional module the grader leaves out (rfc3987_syntax, see grader/__init__.py).

    python bench/bench_imports.py [--repeat N]

Each figure is the median CPU (user + system) of N fresh interpreters that import
``grader.worker`` (which brings nbgrader, nbformat and jsonschema); the ratio is measured in
the same run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WITH_GRADER = "import grader.worker"
WITHOUT_SKIP = "import rfc3987_syntax; import grader.worker"
"""The same imports, rfc3987_syntax imported first (as it would be without grader/__init__.py's
line): what every grading process paid before."""


def cpu_of(code: str) -> float:
    """CPU seconds of a fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    ours = statistics.median(cpu_of(WITH_GRADER) for _ in range(args.repeat))
    before = statistics.median(cpu_of(WITHOUT_SKIP) for _ in range(args.repeat))
    print(f"import grader.worker, rfc3987_syntax imported too: {before:5.2f} CPU-s")
    print(f"import grader.worker as it runs:                   {ours:5.2f} CPU-s")
    print(f"ratio {ours / before:.2f} (saved {before - ours:.2f} CPU-s per grading process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
