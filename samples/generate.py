"""Write the sample class in samples/class/ from the release and the solutions: `make samples`.

Each sample is what a student would hand in: the release notebook with its exercise cells
filled in. A complete student gets the instructor's solution code (fences removed); a student
with a classic mistake gets that solution with the edits ``samples/expected.yaml`` lists; a
blank student hands in the release untouched. The same file says which tests each submission
must fail; ``tests/test_samples.py`` grades the class against it.

    python samples/generate.py [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CLASS = SAMPLES / "class"
FENCE = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solution_sources(assignment: str) -> dict[str, str]:
    """grade_id -> the instructor's code of each solution cell, fence lines removed."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {
        _grade_id(c): "\n".join(line for line in c.source.splitlines() if not FENCE.match(line))
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def edited(source: str, edits: list[list[str]], where: str) -> str:
    """``source`` with each [old, new] pair applied; every ``old`` must occur exactly once."""
    for old, new in edits:
        if source.count(old) != 1:
            raise ValueError(f"{where}: {old!r} occurs {source.count(old)} times, not once")
        source = source.replace(old, new)
    return source


def filled_release(assignment: str, edits: dict[str, list[list[str]]] | None = None):
    """The release notebook with every solution cell answered, ``edits`` applied by grade_id."""
    nb = nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = solution_sources(assignment)
    for grade_id, pairs in (edits or {}).items():
        answers[grade_id] = edited(answers[grade_id], pairs, f"{assignment}/{grade_id}")
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if grade_id in answers and cell.metadata["nbgrader"].get("solution"):
            cell.source = answers[grade_id]
    return nb


def blank_release(assignment: str):
    return nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)


def class_plan() -> dict:
    """samples/expected.yaml: students, what each hands in, and which tests each must fail."""
    return yaml.safe_load((SAMPLES / "expected.yaml").read_text())


def write_class(out: Path) -> list[Path]:
    """Write every sample notebook under ``out``; returns the paths written."""
    written = []
    for student, plan in class_plan()["students"].items():
        for assignment, spec in plan["assignments"].items():
            spec = spec or {}
            if spec.get("blank"):
                nb = blank_release(assignment)
            else:
                nb = filled_release(assignment, spec.get("edit"))
            path = out / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            written.append(path)
    return written


def stale_samples() -> list[str]:
    """Sample files that differ from a fresh generation; [] when samples/class/ is current."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = [p.relative_to(tmp) for p in write_class(Path(tmp))]
        current = {p.relative_to(CLASS) for p in CLASS.glob("*/*/*.ipynb")}
        problems = [f"extra: {p}" for p in sorted(current - set(fresh))]
        for rel in fresh:
            if rel not in current:
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(Path(tmp) / rel, CLASS / rel, shallow=False):
                problems.append(f"changed: {rel}")
        return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if samples/ is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_samples()
        print("\n".join(problems) or "samples/ is current")
        return 1 if problems else 0
    for old in CLASS.glob("*/*/*.ipynb"):
        old.unlink()
    for path in write_class(CLASS):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
