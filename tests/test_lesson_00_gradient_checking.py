"""Lesson 00_gradient_checking, the notebook and its two measuring tools: the notebook's own
grade cells (hidden tests included) against planted bugs in relative_error and
numerical_gradient, independently written correct versions of both, and the knowledge check.
The two small layers checked with these tools (scale and shift, centering) are tested in
tests/test_lesson_00_gradient_checking_layers.py.

Each planted bug is a classic mistake; it must lose the points of its exercise's grade cells,
and where the check can name the mistake, the failure message must say so. Each independent
implementation (written differently from the solution) must keep full points.
"""

import nbformat
import pytest

from tests.harness import (
    Template,
    planted,
    planted_and_correct_tests,
    planted_cases,
    solution_path,
    solution_tests,
)

ASSIGNMENT = "00_gradient_checking"
RELATIVE_ERROR = ["test_relative_error"]
NUMERICAL_GRADIENT = ["test_numerical_gradient"]
LAYERS = [  # tests/test_lesson_00_gradient_checking_layers.py
    "test_scale_shift_forward",
    "test_scale_shift_backward",
    "test_center_forward",
    "test_center_backward",
]
QUIZ = ["test_q1", "test_q2"]
CODE_GRADE_CELLS = RELATIVE_ERROR + NUMERICAL_GRADIENT + LAYERS + QUIZ


# --- the notebook itself -------------------------------------------------------------------


def test_notebook_has_the_grade_cells_these_tests_name():
    """Cleanliness and markup of every notebook: tests/test_notebooks.py."""
    nb = nbformat.read(solution_path(ASSIGNMENT), as_version=4)
    grade_ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert set(CODE_GRADE_CELLS) <= set(grade_ids)
    assert "written_choosing_h" in grade_ids


POINTS = {  # as the notebook announces them: 11 points of code cells
    "test_relative_error": 1,
    "test_numerical_gradient": 2,
    "test_scale_shift_forward": 1,
    "test_scale_shift_backward": 2,
    "test_center_forward": 1,
    "test_center_backward": 2,
    "test_q1": 1,
    "test_q2": 1,
}
assert set(POINTS) == set(CODE_GRADE_CELLS)
test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    POINTS, others=(), written={"written_choosing_h": 2}
)


# --- exercise 1: relative_error ------------------------------------------------------------

RELATIVE_ERROR_TEMPLATE = Template(
    """
def relative_error(a, b, floor=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("shapes")
    scale = {scale}
    return {result}
""",
    dict(
        scale="max(np.abs(a).max(), np.abs(b).max(), floor)",
        result="float(np.abs(a - b).max() / scale)",
    ),
)
NO_FLOOR = "max(np.abs(a).max(), np.abs(b).max())"

RELATIVE_ERROR_BUGS = {
    "absolute error": (
        planted(RELATIVE_ERROR_TEMPLATE, result="float(np.max(np.abs(a - b)))"),
        "absolute error",
    ),
    "elementwise": (
        planted(
            RELATIVE_ERROR_TEMPLATE,
            result="float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))",
        ),
        "elementwise relative error",
    ),
    "divides by max|a| only": (
        planted(RELATIVE_ERROR_TEMPLATE, scale="max(np.max(np.abs(a)), floor)"),
        "dividing by max|a| only",
    ),
    "divides by max|b| only": (
        planted(RELATIVE_ERROR_TEMPLATE, scale="max(np.max(np.abs(b)), floor)"),
        "dividing by max|b| only",
    ),
    "euclidean norms": (
        planted(
            RELATIVE_ERROR_TEMPLATE,
            scale="max(np.linalg.norm(a), np.linalg.norm(b), floor)",
            result="float(np.linalg.norm(a - b) / scale)",
        ),
        "Euclidean norms",
    ),
    "mean instead of max": (
        planted(RELATIVE_ERROR_TEMPLATE, result="float(np.mean(np.abs(a - b)) / scale)"),
        "mean of |a - b|",
    ),
    "no floor (0 / 0 on zeros)": (
        """
        def relative_error(a, b, floor=1e-12):
            a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
            if a.shape != b.shape:
                raise ValueError("shapes")
            with np.errstate(all="ignore"):
                return float(np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max()))
        """,
        "Keep the floor",
    ),
    # Special-cases exact zeros, so only the hidden roundoff-sized case can catch it.
    "no floor, zeros special-cased": (
        planted(
            RELATIVE_ERROR_TEMPLATE,
            scale=NO_FLOOR,
            result="0.0 if scale == 0 else float(np.abs(a - b).max() / scale)",
        ),
        "without the floor",
    ),
    "broadcasts mismatched shapes": (
        planted(
            RELATIVE_ERROR_TEMPLATE,
            ('    if a.shape != b.shape:\n        raise ValueError("shapes")\n', "", 1),
        ),
        "Raise ValueError when the shapes differ",
    ),
    "calls torch": (
        """
        import torch

        def relative_error(a, b, floor=1e-12):
            ta = torch.as_tensor(np.asarray(a, dtype=float))
            tb = torch.as_tensor(np.asarray(b, dtype=float))
            if ta.shape != tb.shape:
                raise ValueError("shapes")
            scale = max(ta.abs().max().item(), tb.abs().max().item(), floor)
            return (ta - tb).abs().max().item() / scale
        """,
        "called PyTorch",
    ),
}

INDEPENDENT_RELATIVE_ERROR = """
    def relative_error(a, b, floor=1e-12):
        a = np.array(a, dtype=np.float64, ndmin=1)
        b = np.array(b, dtype=np.float64, ndmin=1)
        if a.shape != b.shape:
            raise ValueError(f"cannot compare {a.shape} with {b.shape}")
        largest = np.linalg.norm(np.concatenate([a.ravel(), b.ravel(), [floor]]), ord=np.inf)
        return np.linalg.norm((a - b).ravel(), ord=np.inf) / largest
    """


# --- exercise 2: numerical_gradient --------------------------------------------------------

NUMERICAL_GRADIENT_CODE = """
def numerical_gradient(f, x, dout=None, h=1e-5):
    w = 1.0 if dout is None else dout
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.sum(f(x) * w)
        x[i] = old - h
        minus = np.sum(f(x) * w)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad
"""
"""A correct central difference that the planted bugs below edit."""

NUMERICAL_GRADIENT_BUGS = {
    "one-sided difference": (
        planted(
            NUMERICAL_GRADIENT_CODE,
            ("    for i in", "    base = np.sum(f(x) * w)\n    for i in", 1),
            ("        x[i] = old - h\n        minus = np.sum(f(x) * w)\n", "", 1),
            ("(plus - minus) / (2 * h)", "(plus - base) / h", 1),
        ),
        "one-sided difference",
    ),
    "divides by h instead of 2h": (
        planted(NUMERICAL_GRADIENT_CODE, ("(plus - minus) / (2 * h)", "(plus - minus) / h", 1)),
        "dividing by h instead of 2 * h",
    ),
    "x not restored": (
        planted(NUMERICAL_GRADIENT_CODE, ("        x[i] = old\n", "", 1)),
        "left x changed",
    ),
    "dout ignored": (
        planted(NUMERICAL_GRADIENT_CODE, ("w = 1.0 if dout is None else dout", "w = 1.0", 1)),
        "dout was ignored",
    ),
    "h ignored": (
        planted(NUMERICAL_GRADIENT_CODE, ("h=1e-5):\n", "h=1e-5):\n    h = 1e-5\n", 1)),
        "the h argument was ignored",
    ),
    "keeps f(x) arrays that may be views": (
        planted(
            NUMERICAL_GRADIENT_CODE,
            ("np.sum(f(x) * w)", "f(x)", 2),
            ("(plus - minus) / (2 * h)", "np.sum((plus - minus) * w) / (2 * h)", 1),
        ),
        "f may return a view of x",
    ),
    "perturbs a flattened copy": (
        """
        def numerical_gradient(f, x, dout=None, h=1e-5):
            w = 1.0 if dout is None else dout
            flat = x.reshape(-1)
            grad = np.zeros(x.size)
            for k in range(x.size):
                old = flat[k]
                flat[k] = old + h
                plus = np.sum(f(x) * w)
                flat[k] = old - h
                minus = np.sum(f(x) * w)
                flat[k] = old
                grad[k] = (plus - minus) / (2 * h)
            return grad.reshape(x.shape)
        """,
        "not contiguous",
    ),
    "only two axes": (
        """
        def numerical_gradient(f, x, dout=None, h=1e-5):
            w = 1.0 if dout is None else dout
            grad = np.zeros(x.shape)
            for r in range(x.shape[0]):
                for c in range(x.shape[1]):
                    old = x[r, c].copy()
                    x[r, c] = old + h
                    plus = np.sum(f(x) * w)
                    x[r, c] = old - h
                    minus = np.sum(f(x) * w)
                    x[r, c] = old
                    grad[r, c] = (plus - minus) / (2 * h)
            return grad
        """,
        None,
    ),
    "calls torch": (
        planted(
            NUMERICAL_GRADIENT_CODE,
            ("def numerical_gradient(", "import torch\n\ndef numerical_gradient(", 1),
            ("np.zeros(x.shape)", "torch.zeros(x.shape, dtype=torch.float64)", 1),
            ("    return grad\n", "    return grad.numpy()\n", 1),
        ),
        "called PyTorch",
    ),
}

# Never touches x: each evaluation gets its own perturbed copy.
INDEPENDENT_NUMERICAL_GRADIENT = """
    def numerical_gradient(f, x, dout=None, h=1e-5):
        weight = np.ones(()) if dout is None else np.asarray(dout)

        def loss_at(point):
            return float((np.asarray(f(point)) * weight).sum())

        grad = np.empty(x.shape)
        it = np.nditer(x, flags=["multi_index"])
        while not it.finished:
            idx = it.multi_index
            up, down = x.copy(), x.copy()
            up[idx] += h
            down[idx] -= h
            grad[idx] = (loss_at(up) - loss_at(down)) / (2.0 * h)
            it.iternext()
        return grad
    """

# --- both tools: planted bugs lose the points, independent code keeps them -----------------

PLANTED = [
    *planted_cases(RELATIVE_ERROR, RELATIVE_ERROR_BUGS),
    *planted_cases(NUMERICAL_GRADIENT, NUMERICAL_GRADIENT_BUGS),
]
INDEPENDENT = {
    "relative_error": (RELATIVE_ERROR, INDEPENDENT_RELATIVE_ERROR),
    "numerical_gradient": (NUMERICAL_GRADIENT, INDEPENDENT_NUMERICAL_GRADIENT),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, INDEPENDENT
)


# --- knowledge check -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("question, key", [(1, "b"), (2, "b")])
def test_knowledge_check_gives_the_point_only_for_the_key(nb, question, key):
    nb.assert_only_the_key_passes(f"test_q{question}", f"answer_q{question}", key, "abcde")


@pytest.mark.slow
def test_knowledge_check_failure_does_not_print_the_key(nb):
    (outcome,) = nb.run_tests(["test_q1"], "answer_q1 = 'a'")
    assert not outcome.passed and '"b"' not in outcome.message
