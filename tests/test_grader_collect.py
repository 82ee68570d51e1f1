"""grader.collect: only the documented layouts map to a student; links are never followed;
two candidates for one notebook are a conflict; every problem line is exact."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import pytest

from grader.collect import collect

NOTEBOOKS = {"toy": ["toy"], "other": ["other"]}
FOLDER_OR_CANVAS = (
    "expected <student>/<assignment>/<notebook>.ipynb or a Canvas name "
    "<name>_<userid>_<attachid>_<notebook>.ipynb at the top level"
)
LINK = "links are never followed"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _zip(path, *members):
    """The zip ``path`` holding ``members``: (name or ZipInfo, text) pairs, in order."""
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members:
            zf.writestr(member, text)
    return path


def _class(tmp_path):
    """An honest class: ann and bob, each handing in toy."""
    src = tmp_path / "in"
    _write(src / "ann" / "toy" / "toy.ipynb", '{"who": "ann"}')
    _write(src / "bob" / "toy" / "toy.ipynb", '{"who": "bob"}')
    return src


def _mapped(found) -> dict[tuple[str, str, str], str]:
    return {(s.student, s.assignment, s.notebook): s.path.read_text() for s in found}


def test_an_honest_class_maps_to_private_copies(tmp_path):
    src = _class(tmp_path)
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert problems == []
    assert _mapped(found) == {
        ("ann", "toy", "toy"): '{"who": "ann"}',
        ("bob", "toy", "toy"): '{"who": "bob"}',
    }
    for sub in found:
        assert (tmp_path / "work") in sub.path.parents and sub.path.name == "toy.ipynb"


def test_a_notebook_in_a_nested_folder_never_maps_to_the_student_it_names(tmp_path):
    src = _class(tmp_path)
    _write(src / "mallory" / "bob" / "toy" / "toy.ipynb", '{"who": "mallory"}')
    _write(src / "mallory" / "toy" / "x" / "bob" / "toy" / "toy.ipynb", '{"who": "mallory"}')
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert _mapped(found)["bob", "toy", "toy"] == '{"who": "bob"}'
    assert {s.student for s in found} == {"ann", "bob"}
    assert problems == [
        f"cannot map mallory/bob/toy/toy.ipynb: {FOLDER_OR_CANVAS}",
        f"cannot map mallory/toy/x/bob/toy/toy.ipynb: {FOLDER_OR_CANVAS}",
    ]


def test_a_file_named_like_a_classmates_lms_download_is_rejected(tmp_path):
    src = _class(tmp_path)
    _write(src / "mallory" / "toy" / "bob_1002_99999_toy.ipynb", '{"who": "mallory"}')
    _write(src / "mallory" / "bob_1002_99999_toy.ipynb", '{"who": "mallory"}')
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert _mapped(found)["bob", "toy", "toy"] == '{"who": "bob"}'
    assert problems == [
        f"cannot map mallory/bob_1002_99999_toy.ipynb: {FOLDER_OR_CANVAS}",
        "cannot map mallory/toy/bob_1002_99999_toy.ipynb: named like bob's LMS download but "
        "in mallory's folder; a file counts only for the student whose folder holds it",
    ]


def test_a_symlink_to_a_classmates_notebook_is_never_followed(tmp_path):
    src = _class(tmp_path)
    (src / "mallory" / "toy").mkdir(parents=True)
    (src / "mallory" / "toy" / "toy.ipynb").symlink_to(src / "bob" / "toy" / "toy.ipynb")
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert {s.student for s in found} == {"ann", "bob"}
    assert problems == [f"ignored mallory/toy/toy.ipynb: a symbolic link ({LINK})"]


def test_a_symlinked_folder_is_never_entered(tmp_path):
    src = _class(tmp_path)
    (src / "mallory").mkdir()
    (src / "mallory" / "toy").symlink_to(src / "bob" / "toy", target_is_directory=True)
    (src / "zed").symlink_to(src / "bob", target_is_directory=True)
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert {s.student for s in found} == {"ann", "bob"}
    assert problems == [
        "nothing to grade in mallory/: it holds no notebook",
        f"ignored zed/: a symbolic link ({LINK})",
        f"ignored mallory/toy/: a symbolic link ({LINK})",
    ]


def test_hard_links_are_never_followed_either(tmp_path):
    src = _class(tmp_path)
    (src / "mallory" / "toy").mkdir(parents=True)
    os.link(src / "bob" / "toy" / "toy.ipynb", src / "mallory" / "toy" / "toy.ipynb")
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert {s.student for s in found} == {"ann"}  # which name is bob's own cannot be told
    assert problems == [
        f"ignored bob/toy/toy.ipynb: a hard link (2 names; {LINK})",
        f"ignored mallory/toy/toy.ipynb: a hard link (2 names; {LINK})",
    ]


def test_a_symlinked_source_is_refused(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(_class(tmp_path), target_is_directory=True)
    with pytest.raises(ValueError, match="is a symbolic link: links are never followed"):
        collect(link, NOTEBOOKS, tmp_path / "work")


@pytest.mark.parametrize(
    "names",
    [
        ("ann/toy/toy.ipynb", "Ann/toy/toy.ipynb"),  # one folder on a case-insensitive disk
        ("ann/toy/toy.ipynb", "ann/toy/toy-Copy1.ipynb"),  # two files for one notebook
    ],
)
def test_two_candidates_for_one_notebook_are_a_conflict_and_neither_is_graded(tmp_path, names):
    src = tmp_path / "in"
    for name in names:
        _write(src / name, "{}")
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert found == []
    first, second = sorted(names)
    assert problems == [
        f"conflict: 2 candidates for ann/toy/toy.ipynb ({first}, {second}); "
        "none of them is graded: keep one and grade again"
    ]


def test_a_zip_symlink_member_is_never_followed(tmp_path):
    link = zipfile.ZipInfo("bob/toy/toy.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    fifo = zipfile.ZipInfo("cid/toy/toy.ipynb")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    archive = _zip(
        tmp_path / "class.zip",
        ("ann/toy/toy.ipynb", '{"who": "ann"}'),
        (link, "../../ann/toy/toy.ipynb"),
        (fifo, ""),
    )
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    assert _mapped(found) == {("ann", "toy", "toy"): '{"who": "ann"}'}
    assert problems == [
        f"ignored bob/toy/toy.ipynb: a symbolic link ({LINK})",
        "ignored cid/toy/toy.ipynb: not a regular file",
    ]


def test_zip_conflicts_name_every_candidate(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = _zip(
            tmp_path / "class.zip",
            ("ann/toy/toy.ipynb", "{}"),
            ("ann_1001_5_toy.ipynb", "{}"),  # the LMS's copy of the same student
            ("lee_2001_7_toy.ipynb", "{}"),  # two users with one display name
            ("lee_2002_8_toy.ipynb", "{}"),
            ("roe_3001_1_other.ipynb", '{"who": "roe"}'),  # one member name twice
            ("roe_3001_1_other.ipynb", '{"who": "roe again"}'),
        )
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    assert found == []
    assert problems == [
        "conflict: 2 candidates for ann/toy/toy.ipynb (ann_1001_5_toy.ipynb, "
        "ann/toy/toy.ipynb); none of them is graded: keep one and grade again",
        "conflict: 2 candidates for lee/toy/toy.ipynb (lee_2002_8_toy.ipynb, "
        "lee_2001_7_toy.ipynb); none of them is graded: keep one and grade again",
        "conflict: 2 candidates for roe/other/other.ipynb (roe_3001_1_other.ipynb, "
        "roe_3001_1_other.ipynb); none of them is graded: keep one and grade again",
    ]


def test_a_zip_nested_below_its_wrapping_folder_does_not_map(tmp_path):
    archive = _zip(
        tmp_path / "class.zip",
        ("export/ann/toy/toy.ipynb", '{"who": "ann"}'),
        ("export/mallory/ann/toy/toy.ipynb", '{"who": "mallory"}'),
        ("export/mallory/ann_1_2_toy.ipynb", '{"who": "mallory"}'),
    )
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    assert _mapped(found) == {("ann", "toy", "toy"): '{"who": "ann"}'}
    assert problems == [
        f"cannot map export/mallory/ann/toy/toy.ipynb: {FOLDER_OR_CANVAS}",
        f"cannot map export/mallory/ann_1_2_toy.ipynb: {FOLDER_OR_CANVAS}",
    ]


def test_control_characters_in_names_are_escaped_in_problem_lines(tmp_path):
    src = _class(tmp_path)
    _write(src / "ann" / "toy" / "\x1b[2J\x1b]0;owned\x07\x9b31m.py", "")
    _, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert problems == [
        "ignored ann/toy/\\x1b[2J\\x1b]0;owned\\x07\\x9b31m.py: only notebooks are graded"
    ]


def test_folder_layout_maps_students_and_reports_the_rest(tmp_path):
    src = tmp_path / "in"
    _write(src / "ann" / "toy" / "toy.ipynb", "{}")
    _write(src / "ann" / "toy" / "utils.py", "{}")
    _write(src / "ben" / "nope" / "nope.ipynb", "{}")
    _write(src / "ben" / "toy" / ".ipynb_checkpoints" / "toy-checkpoint.ipynb", "{}")
    _write(src / "loose.ipynb", "{}")
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert [(s.student, s.assignment, s.notebook) for s in found] == [("ann", "toy", "toy")]
    assert len(problems) == 3
    assert any("ann/toy/utils.py" in p and "only notebooks" in p for p in problems)
    assert any("unknown assignment 'nope'" in p for p in problems)
    assert any("loose.ipynb" in p and "cannot map" in p for p in problems)


def test_canvas_zip_keeps_the_latest_attachment_and_reports_the_unmappable(tmp_path):
    archive = _zip(
        tmp_path / "canvas.zip",
        ("doejane_1001_5_toy.ipynb", '{"old": true}'),
        ("doejane_LATE_1001_9_toy-1.ipynb", '{"new": true}'),
        ("roe_1002_7_other.ipynb", "{}"),
        ("roe_1002_8_mystery.ipynb", "{}"),
        ("__MACOSX/._doejane_1001_5_toy.ipynb", ""),
        ("notes.txt", "hi"),
    )
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    by_student = {s.student: s for s in found}
    assert set(by_student) == {"doejane", "roe"}
    jane = by_student["doejane"]
    assert (jane.assignment, jane.notebook, jane.lms_user_id) == ("toy", "toy", "1001")
    assert jane.path.name == "toy.ipynb" and json.loads(jane.path.read_text()) == {"new": True}
    assert by_student["roe"].assignment == "other"
    assert any("mystery" in p and "no assignment has a notebook" in p for p in problems)
    assert any("notes.txt" in p for p in problems)
    assert any("doejane_1001_5_toy.ipynb" in p and "later submission" in p for p in problems)
    assert len(problems) == 3


def test_a_zip_of_the_folder_layout_ignores_leading_folders(tmp_path):
    archive = _zip(
        tmp_path / "class.zip",
        ("export/ann/toy/toy.ipynb", "{}"),
        ("export/../../evil/toy/toy.ipynb", "{}"),
    )
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    assert [s.student for s in found] == ["ann"]
    assert (tmp_path / "work") in found[0].path.parents
    assert len(problems) == 1 and "evil" in problems[0] and "'..'" in problems[0]


def test_an_unsafe_student_id_is_reported(tmp_path):
    _write(tmp_path / "in" / "-rf" / "toy" / "toy.ipynb", "{}")
    found, problems = collect(tmp_path / "in", NOTEBOOKS, tmp_path / "work")
    assert found == [] and "not a usable student id" in problems[0]


def test_the_cli_prints_a_hostile_file_name_with_its_escapes_visible(tmp_path, capsys):
    from fixtures.toy import COURSE

    from grader.cli import main

    _write(tmp_path / "in" / "ann" / "toy" / "\x1b]0;owned\x07.py", "")
    args = ["grade", str(tmp_path / "in"), "--root", str(COURSE)]
    assert main([*args, "--course-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "not graded: ignored ann/toy/\\x1b]0;owned\\x07.py: only notebooks are graded" in out
