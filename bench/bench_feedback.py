"""Wall time of writing the feedback pages of a graded course in one process and in several
(``grader.feedback.write_feedback(..., workers=N)``), on the same course in the same run.

    python bench/bench_feedback.py [--course-dir .course] [--workers N]

Grade something first (``make demo`` grades the sample class into ``.course``). The pages are
written to temporary folders; the two runs must write the same bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.course import Course  # noqa: E402
from grader.feedback import write_feedback  # noqa: E402


def timed(course: Course, out: Path, workers: int) -> tuple[float, list[Path]]:
    started = time.perf_counter()
    files = write_feedback(course, out, workers=workers)
    return time.perf_counter() - started, files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course-dir", type=Path, default=ROOT / ".course")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    course = Course(ROOT, args.course_dir.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        one, files = timed(course, Path(tmp) / "one", 1)
        many, parallel = timed(course, Path(tmp) / "many", args.workers)
        same = [p.read_bytes() for p in files] == [p.read_bytes() for p in parallel]
    if not files:
        print(f"no autograded notebooks under {args.course_dir}: grade something first")
        return 1
    print(f"{len(files)} pages, 1 process:   {one:6.1f} s wall ({one / len(files):.2f} s a page)")
    print(f"{len(files)} pages, {args.workers} processes: {many:6.1f} s wall")
    print(f"ratio {many / one:.2f}; same pages: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
