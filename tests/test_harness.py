"""tests/harness.py: a substituted helper is what the notebook's own functions call."""

from __future__ import annotations

from harness import _bound_to


def test_a_notebook_function_calls_the_substituted_helper():
    original: dict = {}
    notebook = "def helper(x):\n    return x + 1\n\ndef caller(x, k=2):\n    return helper(x) * k\n"
    exec(notebook, original)
    ns = dict(original)
    exec("def helper(x):\n    return x - 1\n", ns)
    assert ns["caller"](3) == 8  # before binding: the notebook's own helper
    ns.update(_bound_to(ns, original))
    assert ns["caller"](3) == 4 and ns["caller"](3, k=3) == 6
    assert ns["caller"].__name__ == "caller" and original["caller"](3) == 8
