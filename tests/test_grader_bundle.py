"""The student bundle: only the release, utils/ and install files; no solution, no hidden test,
no knowledge-check key, no sample submission; it installs and its lessons run from it."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.bundle import BundleError, bundle
from grader.cli import main
from grader.course import REPO_ROOT, Course
from grader.markup import HIDDEN_TESTS, SOLUTION, region_lines

TRIVIAL_CHARS = 12  # a normalized region or line shorter than this ("pass", "x = 1") is generic
STUDENT_FILES = {"README.md", "Makefile", "pyproject.toml", "environment.yml"}
# Known and reported: lesson 06's release gives lesson 02's answer in a locked, provided cell
# (``provided_2d``: a whole batchnorm_forward). Only a course that releases lesson 06 after
# lesson 02 is due keeps that answer hidden. Any other leak fails.
KNOWN_GIVEAWAYS = {
    (
        "02_batchnorm_forward:batch_statistics",
        "notebooks/06_spatial_batchnorm/06_spatial_batchnorm.ipynb",
    )
}
EXECUTED_LESSONS = ("02_batchnorm_forward", "04_running_statistics")


def normalized(text: str) -> str:
    """``text`` with every line stripped and blank lines dropped."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def file_text(path: Path) -> str:
    """What a reader of ``path`` sees: a notebook's every string (sources, outputs, metadata)
    decoded from JSON, else the file's text."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        return normalized("\n".join(_strings(json.loads(raw))))
    return normalized(raw)


def instructor_regions(region: tuple[str, str]) -> list[tuple[str, str]]:
    """(where, normalized text) of every ``region`` of every solutions/ notebook cell."""
    found = []
    for path in sorted((REPO_ROOT / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            lines = region_lines(cell.source, region)
            if lines:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                found.append((f"{path.stem}:{grade_id}", normalized("\n".join(lines))))
    return found


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bundle")
    return bundle(Course(REPO_ROOT, tmp / ".course"), tmp / "normlab-student")


@pytest.fixture(scope="module")
def texts(bundled) -> dict[str, str]:
    return {
        str(p.relative_to(bundled)): file_text(p) for p in sorted(bundled.rglob("*")) if p.is_file()
    }


def test_the_bundle_holds_the_release_utils_and_install_files_only(bundled):
    assert {p.name for p in bundled.iterdir()} == {"notebooks", "utils", *STUDENT_FILES}
    release = REPO_ROOT / "notebooks"
    expected = {p.relative_to(release) for p in release.rglob("*.ipynb")}
    assert {p.relative_to(bundled / "notebooks") for p in bundled.rglob("*.ipynb")} == expected
    for path in expected:
        assert (bundled / "notebooks" / path).read_bytes() == (release / path).read_bytes()
    names = {p.name for p in bundled.rglob("*")}
    assert not names & {"solutions", "samples", "grader", "tests", "__pycache__", ".course"}


def test_no_solution_text_is_in_any_bundled_file(texts):
    regions = [(w, t) for w, t in instructor_regions(SOLUTION) if len(t) >= TRIVIAL_CHARS]
    assert len(regions) > 50  # every lesson's exercises, written answers and keys
    leaks = {(where, name) for where, text in regions for name, t in texts.items() if text in t}
    assert leaks == KNOWN_GIVEAWAYS


def test_no_hidden_test_nor_knowledge_check_key_is_in_any_bundled_file(texts):
    regions = instructor_regions(HIDDEN_TESTS)
    lines = {line for _, text in regions for line in text.splitlines()}
    keys = [line for line in lines if line.startswith("assert answer_")]
    assert len(keys) >= 10  # the knowledge checks' keys are among them
    pieces = [text for _, text in regions] + [x for x in lines if len(x) >= TRIVIAL_CHARS]
    leaks = [(piece, name) for piece in pieces for name, t in texts.items() if piece in t]
    assert not leaks


# Check families whose hidden cases still sit beside their visible checks (lessons whose test
# cells have not moved into the checker yet). Moving one means deleting it here.
HIDDEN_NOT_YET_MOVED: set[str] = set()


def _hidden_names(path: Path) -> set[str]:
    """Top-level names of a module that are hidden cases or hidden checks."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {n for n in names if "hidden" in n.lower()}


def _family(path: Path, checks: Path) -> str:
    return path.relative_to(checks).parts[0].removesuffix(".py")


def test_the_hidden_cases_and_checks_stay_out_of_the_bundle(bundled):
    assert (REPO_ROOT / "utils" / "checks" / "hidden").is_dir()
    assert not (bundled / "utils" / "checks" / "hidden").exists()
    checks = bundled / "utils" / "checks"
    holding = {
        _family(p, checks): sorted(_hidden_names(p))
        for p in sorted(checks.rglob("*.py"))
        if _hidden_names(p)
    }
    assert set(holding) == HIDDEN_NOT_YET_MOVED, holding
    for path in bundled.rglob("*.py"):
        imported = [
            node.module or ""
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom)
        ]
        assert not [m for m in imported if m.startswith("utils.checks.hidden")], path


def test_every_hidden_test_cell_imports_its_checks_from_the_hidden_package():
    """The graded hidden checks exist only where the checker reads them."""
    found = []
    for where, text in instructor_regions(HIDDEN_TESTS):
        for module in re.findall(r"^from (utils\.checks[\w.]*) import", text, flags=re.M):
            found.append(module)
            family = module.split(".")[-1]
            if family not in HIDDEN_NOT_YET_MOVED:
                assert module.startswith("utils.checks.hidden."), (where, module)
    assert len(found) > 40


def test_no_sample_submission_is_bundled(bundled):
    release = {p.read_bytes() for p in (REPO_ROOT / "notebooks").rglob("*.ipynb")}
    samples = {p.read_bytes() for p in (REPO_ROOT / "samples").rglob("*") if p.is_file()}
    samples -= release  # the blank student hands in the release untouched
    assert len(samples) > 10
    assert not [p for p in bundled.rglob("*") if p.is_file() and p.read_bytes() in samples]


def test_the_install_files_need_neither_the_grader_nor_its_tools(bundled):
    project = tomllib.loads((bundled / "pyproject.toml").read_text(encoding="utf-8"))
    deps = " ".join(project["project"]["dependencies"])
    assert "torch==2.13.0" in deps and "numpy" in deps and "jupyterlab" in deps
    for tool in ("nbgrader", "pytest", "hypothesis", "ruff", "distributed"):
        assert tool not in deps
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["utils*"]
    environment = (bundled / "environment.yml").read_text(encoding="utf-8")
    assert "torch==2.13.0" in environment and "nbgrader" not in environment
    readme = (bundled / "README.md").read_text(encoding="utf-8")
    assert "notebooks/02_batchnorm_forward/02_batchnorm_forward.ipynb" in readme
    assert "make lab" in readme and "lab:" in (bundled / "Makefile").read_text(encoding="utf-8")


def test_the_cli_writes_a_zip_with_the_same_files(tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["bundle", "--out", str(out), "--zip", "--course-dir", str(tmp_path / "c")]) == 0
    assert str(out) + ".zip" in capsys.readouterr().out
    folder = {p.relative_to(tmp_path).as_posix() for p in out.rglob("*") if p.is_file()}
    with zipfile.ZipFile(tmp_path / "student.zip") as zf:
        assert {n for n in zf.namelist() if not n.endswith("/")} == folder


def test_a_bundle_never_overwrites_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an empty folder"):
        bundle(Course(REPO_ROOT, tmp_path / ".course"), tmp_path)
    assert main(["bundle", "--out", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


# ---- installing and running from the bundle ----------------------------------------------


@pytest.fixture(scope="module")
def student_python(bundled, tmp_path_factory) -> Path:
    """A fresh venv with the bundle pip-installed (not editable) into its own site-packages.

    For speed it sees this venv's packages (torch, jupyter) through a .pth line, after its
    own: ``venv --system-site-packages`` from inside a venv would show the base interpreter's
    packages instead. A .pth line runs no .pth file of that folder, so this project's editable
    ``utils`` stays invisible.
    """
    venv = tmp_path_factory.mktemp("student-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (Path(site) / "normlab-project-packages.pth").write_text(ours + "\n", encoding="utf-8")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*install, str(bundled)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def _fresh_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER"))}
    env.update(HOME=str(home), MPLBACKEND="Agg")
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "IPYTHONDIR"):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_the_bundle_installs_its_utils_into_a_fresh_venv(student_python, tmp_path):
    code = "import utils, utils.checks.batchnorm, utils.nn; print(utils.__file__)"
    done = subprocess.run(
        [student_python, "-c", code],
        cwd=tmp_path,
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(student_python.parents[1])


def solved(release: Path, solution: Path):
    """The release notebook with every solution cell replaced by the instructor's."""
    sources = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(solution, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in sources:
            cell.source = sources[grade_id]
    return nb


RUN_NOTEBOOK = textwrap.dedent(
    """
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    folder = {"metadata": {"path": sys.argv[2]}}  # a kernel starts where JupyterLab starts it
    NotebookClient(nb, timeout=120, kernel_name="python3", resources=folder).execute()
    nbformat.write(nb, sys.argv[1])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", EXECUTED_LESSONS)
def test_a_lesson_solved_runs_from_the_bundle_with_an_empty_home(
    lesson, bundled, student_python, tmp_path
):
    copy = tmp_path / "bundle"
    shutil.copytree(bundled, copy)  # the tests do not share edits to one bundle
    target = copy / "notebooks" / lesson / f"{lesson}.ipynb"
    nb = solved(target, REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb")
    nb.cells.append(nbformat.v4.new_code_cell('import utils; print("utils from", utils.__file__)'))
    nbformat.write(nb, target)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [student_python, "-c", RUN_NOTEBOOK, str(target), str(target.parent)],
        cwd=copy,
        env=_fresh_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(target, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    printed = "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )
    assert "recorded" in printed  # the knowledge checks' visible lines ran
    used = Path(printed.split("utils from ")[-1].strip())
    assert used.is_relative_to(student_python.parents[1])  # the installed bundle, not this repo
