"""grader.markup: the regions between nbgrader's markers, the lines outside them, hidden
tests redacted for feedback."""

from __future__ import annotations

from grader.markup import HIDDEN_TESTS, SOLUTION, lines_outside, redact_hidden_tests, region_lines

TEST_SOURCE = (
    '"""Checks f."""\n'
    "assert f(1) == 2\n"
    "if True:\n"
    "    ### BEGIN HIDDEN TESTS\n"
    "    assert f(-3) == -6  # secret\n"
    "    ### END HIDDEN TESTS\n"
    'print("done")'
)


def test_region_lines_are_the_lines_between_the_markers():
    assert region_lines(TEST_SOURCE, HIDDEN_TESTS) == ["    assert f(-3) == -6  # secret"]
    assert region_lines(TEST_SOURCE, SOLUTION) == []


def test_lines_outside_drop_regions_and_markers():
    outside = lines_outside(TEST_SOURCE, (SOLUTION, HIDDEN_TESTS))
    assert "    assert f(-3) == -6  # secret" not in outside
    assert not any("HIDDEN" in line for line in outside)
    assert 'print("done")' in outside


def test_redacted_hidden_tests_leave_a_note_with_the_markers_indentation():
    redacted = redact_hidden_tests(TEST_SOURCE)
    assert "secret" not in redacted and "HIDDEN" not in redacted
    assert "    pass  # hidden tests ran here" in redacted.splitlines()
    compile(redacted, "<test>", "exec")  # still valid Python
