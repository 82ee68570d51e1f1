"""Lesson 01: the notebook's own grade cells (hidden tests included) against planted bugs.

Every planted bug must lose the points of its exercise's grade cell, and where the diagnosis
should name the mistake, the failure message must contain the expected hint. An independently
written correct implementation keeps full points; calling PyTorch loses them.
"""

from __future__ import annotations

import pytest

from tests.harness import (
    Template,
    planted,
    planted_and_correct_tests,
    planted_cases,
    solution_tests,
)

pytestmark = pytest.mark.slow

MLP = ["test_mlp_activations"]
STATS = ["test_layer_statistics"]
INIT = ["test_init_weights"]


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    {**dict.fromkeys(MLP, 3), **dict.fromkeys(STATS, 3), **dict.fromkeys(INIT, 2)},
    others=("test_answer_q1", "test_answer_q2"),
    written={"written_scale": 3},
)


@pytest.mark.parametrize("grade_id", ["mlp_activations", "layer_statistics", "init_weights"])
def test_exercise_stub_keeps_its_return_outside_the_fence(nb, grade_id):
    assert nb.cell_source(grade_id).split("### END SOLUTION", 1)[1].strip().startswith("return ")


# --- mlp_activations -----------------------------------------------------------------------------

_F = """
def _f(z, activation):
    return np.tanh(z) if activation == "tanh" else np.maximum(z, 0.0)
"""

MLP_BUGS = {
    "before the matrix product": """
def mlp_activations(x, weights, activation):
    out, a = [], x
    for w in weights:
        a = _f(a, activation) @ w
        out.append(a)
    return out
""",
    "the last layer has no activation": """
def mlp_activations(x, weights, activation):
    out, a = [], x
    for i, w in enumerate(weights):
        a = a @ w if i == len(weights) - 1 else _f(a @ w, activation)
        out.append(a)
    return out
""",
    "pre-activations": """
def mlp_activations(x, weights, activation):
    out, a = [], x
    for w in weights:
        z = a @ w
        out.append(z)
        a = _f(z, activation)
    return out
""",
    "although the activation argument is 'relu'": """
def mlp_activations(x, weights, activation):
    out, a = [], x
    for w in weights:
        a = np.tanh(a @ w)
        out.append(a)
    return out
""",
    "Is the input x the first element": """
def mlp_activations(x, weights, activation):
    out = [x]
    for w in weights:
        out.append(_f(out[-1] @ w, activation))
    return out
""",
    "return a list with one array per layer": """
def mlp_activations(x, weights, activation):
    a = x
    for w in weights:
        a = _f(a @ w, activation)
    return a
""",
    "in place": """
def mlp_activations(x, weights, activation):
    x -= x.mean(axis=0)
    out, a = [], x
    for w in weights:
        a = _f(a @ w, activation)
        out.append(a)
    return out
""",
    "relative error": """
def mlp_activations(x, weights, activation):
    out, a = [], x.astype(np.float32)
    for w in weights:
        a = _f(a @ w.astype(np.float32), activation)
        out.append(a)
    return out
""",
    "leaky": """
def mlp_activations(x, weights, activation):  # a leaky ReLU: the hint is generic
    out, a = [], x
    for w in weights:
        z = a @ w
        a = np.tanh(z) if activation == "tanh" else np.where(z > 0, z, 0.01 * z)
        out.append(a)
    return out
""",
}
"""substring of the expected failure message -> planted bug (leaky: no specific hint)."""

INDEPENDENT_MLP = """
from itertools import accumulate


def mlp_activations(x, weights, activation):
    def layer(a, w):
        z = np.einsum("ni,io->no", a, w)
        return z * (z > 0) if activation == "relu" else np.tanh(z)

    return list(accumulate(weights, layer, initial=x))[1:]
"""

TORCH_MLP = """
import torch as _t


def mlp_activations(x, weights, activation):
    out, a = [], _t.tensor(np.array(x))
    for w in weights:
        a = _t.tanh(a @ _t.tensor(np.array(w))) if activation == "tanh" else _t.relu(
            a @ _t.tensor(np.array(w)))
        out.append(a.numpy())
    return out
"""


# --- layer_statistics ----------------------------------------------------------------------------

_STATS_SOURCE = """
def layer_statistics(activations):
    return {{
        "mean": np.array([{mean} for a in activations]),
        "std": np.array([{std} for a in activations]),
        "saturated": np.array([{saturated} for a in activations]),
        "zero": np.array([{zero} for a in activations]),
        "dead": np.array([{dead} for a in activations]),
    }}
"""
CORRECT = {
    "mean": "a.mean()",
    "std": "a.std()",
    "saturated": "np.mean(np.abs(a) > 0.99)",
    "zero": "np.mean(a == 0)",
    "dead": "np.mean(np.all(a == 0, axis=0))",
}


STATS_TEMPLATE = Template(_STATS_SOURCE, CORRECT)


STATS_BUGS = {
    "the mean of |a|": planted(STATS_TEMPLATE, mean="np.abs(a).mean()"),
    "the sample std (ddof=1)": planted(STATS_TEMPLATE, std="a.std(ddof=1)"),
    "per unit (axis=0)": planted(STATS_TEMPLATE, std="a.std(axis=0).mean()"),
    "per sample (axis=1)": planted(STATS_TEMPLATE, std="a.std(axis=1).mean()"),
    "the variance instead of the std": planted(STATS_TEMPLATE, std="a.var()"),
    "the mean is not subtracted": planted(STATS_TEMPLATE, std="np.sqrt(np.mean(a ** 2))"),
    "|a| >= 0.99 is counted": planted(STATS_TEMPLATE, saturated="np.mean(np.abs(a) >= 0.99)"),
    "tanh also saturates at -1": planted(STATS_TEMPLATE, saturated="np.mean(a > 0.99)"),
    "a count instead of a fraction": planted(STATS_TEMPLATE, saturated="np.sum(np.abs(a) > 0.99)"),
    "a <= 0 is counted": planted(STATS_TEMPLATE, zero="np.mean(a <= 0)"),
    "the fraction of non-zero entries": planted(STATS_TEMPLATE, zero="np.mean(a != 0)"),
    "the wrong axis": planted(STATS_TEMPLATE, dead="np.mean(np.all(a == 0, axis=1))"),
    "any instead of all": planted(STATS_TEMPLATE, dead="np.mean(np.any(a == 0, axis=0))"),
    "a count of dead units": planted(STATS_TEMPLATE, dead="np.sum(np.all(a == 0, axis=0))"),
    "one number per layer": """
_solution = layer_statistics


def layer_statistics(activations):
    stats = _solution(activations)
    stats["std"] = [a.std(axis=0) for a in activations]  # one std per unit: a ragged list
    return stats
""",
    "lacks the key(s) dead": """
def layer_statistics(activations):
    return {"mean": np.array([a.mean() for a in activations]),
            "std": np.array([a.std() for a in activations]),
            "saturated": np.array([np.mean(np.abs(a) > 0.99) for a in activations]),
            "zero": np.array([np.mean(a == 0) for a in activations])}
""",
    "returned list": """
def layer_statistics(activations):
    return [{"mean": a.mean(), "std": a.std(), "saturated": np.mean(np.abs(a) > 0.99),
             "zero": np.mean(a == 0), "dead": np.mean(np.all(a == 0, axis=0))}
            for a in activations]
""",
    "in place": """
def layer_statistics(activations):
    stats = {"mean": [], "std": [], "saturated": [], "zero": [], "dead": []}
    for a in activations:
        stats["mean"].append(a.mean())
        stats["zero"].append(np.mean(a == 0))
        stats["dead"].append(np.mean(np.all(a == 0, axis=0)))
        np.abs(a, out=a)
        stats["saturated"].append(np.mean(a > 0.99))
        stats["std"].append(np.sqrt(np.mean(a ** 2) - stats["mean"][-1] ** 2))
    return {k: np.array(v) for k, v in stats.items()}
""",
}

INDEPENDENT_STATS = """
def layer_statistics(activations):
    rows = []
    for a in activations:
        values = a.reshape(-1)
        size = values.size
        mean = values.sum() / size
        rows.append({
            "mean": mean,
            "std": np.sqrt(np.sum((values - mean) ** 2) / size),
            "saturated": np.count_nonzero(np.abs(values) > 0.99) / size,
            "zero": np.count_nonzero(values == 0) / size,
            "dead": np.count_nonzero(np.abs(a).max(axis=0) == 0) / a.shape[1],
        })
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}
"""

TORCH_STATS = """
import torch


def layer_statistics(activations):
    ts = [torch.tensor(np.array(a)) for a in activations]
    return {
        "mean": np.array([t.mean().item() for t in ts]),
        "std": np.array([t.std(correction=0).item() for t in ts]),
        "saturated": np.array([(t.abs() > 0.99).double().mean().item() for t in ts]),
        "zero": np.array([(t == 0).double().mean().item() for t in ts]),
        "dead": np.array([(t == 0).all(dim=0).double().mean().item() for t in ts]),
    }
"""


# --- init_weights --------------------------------------------------------------------------------

INIT_TEMPLATE = Template("""
def init_weights(dims, scale, rng):
    return [{draw} for d_in, d_out in zip(dims[:-1], dims[1:])]
""")


INIT_BUGS = {
    "sqrt(fan_out)": planted(
        INIT_TEMPLATE, draw="scale / np.sqrt(d_out) * rng.standard_normal((d_in, d_out))"
    ),
    "scale multiplies the variance": planted(
        INIT_TEMPLATE, draw="np.sqrt(scale / d_in) * rng.standard_normal((d_in, d_out))"
    ),
    "the square root is missing": planted(
        INIT_TEMPLATE, draw="scale / d_in * rng.standard_normal((d_in, d_out))"
    ),
    "an extra sqrt(2)": planted(
        INIT_TEMPLATE, draw="scale * np.sqrt(2 / d_in) * rng.standard_normal((d_in, d_out))"
    ),
    "Glorot's std": planted(
        INIT_TEMPLATE,
        draw="scale * np.sqrt(2 / (d_in + d_out)) * rng.standard_normal((d_in, d_out))",
    ),
    "the scale is not applied": planted(
        INIT_TEMPLATE, draw="rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)"
    ),
    "not scaled at all": planted(INIT_TEMPLATE, draw="rng.standard_normal((d_in, d_out))"),
    "Draw from a normal distribution": planted(
        INIT_TEMPLATE, draw="scale / np.sqrt(d_in) * np.sqrt(3) * rng.uniform(-1, 1, (d_in, d_out))"
    ),
    "expected 0": planted(INIT_TEMPLATE, draw="scale / np.sqrt(d_in) * rng.random((d_in, d_out))"),
    "transposed?": planted(
        INIT_TEMPLATE, draw="scale / np.sqrt(d_in) * rng.standard_normal((d_out, d_in))"
    ),
    "the same seed": planted(
        INIT_TEMPLATE, draw="scale / np.sqrt(d_in) * np.random.randn(d_in, d_out)"
    ),
    "different seeds": planted(
        INIT_TEMPLATE,
        draw="scale / np.sqrt(d_in) * np.random.default_rng(0).standard_normal((d_in, d_out))",
    ),
    "correlated": """
def init_weights(dims, scale, rng):
    shared = rng.standard_normal((max(dims), max(dims)))
    pairs = zip(dims[:-1], dims[1:])
    return [scale / np.sqrt(d_in) * shared[:d_in, :d_out] for d_in, d_out in pairs]
""",
}

INDEPENDENT_INIT = """
def init_weights(dims, scale, rng):
    weights = []
    for layer in range(len(dims) - 1):
        fan_in, fan_out = dims[layer], dims[layer + 1]
        weights.append(rng.normal(loc=0.0, scale=scale * fan_in ** -0.5, size=(fan_in, fan_out)))
    return weights
"""

TORCH_INIT = """
import torch


def init_weights(dims, scale, rng):
    torch.manual_seed(int(rng.integers(2**31)))
    weights = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        w = torch.empty(d_out, d_in, dtype=torch.float64)
        torch.nn.init.kaiming_normal_(w, a=0.0, mode="fan_in", nonlinearity="linear")
        weights.append(scale * w.T.numpy())
    return weights
"""


# --- every exercise: planted bugs lose the points, correct code keeps them -----------------------

PLANTED = [
    *planted_cases(
        MLP, [(h, _F + code, None if h == "leaky" else h) for h, code in MLP_BUGS.items()]
    ),
    *planted_cases(STATS, [(hint, code, hint) for hint, code in STATS_BUGS.items()]),
    *planted_cases(INIT, [(hint, code, hint) for hint, code in INIT_BUGS.items()]),
    *planted_cases(MLP, [("calls torch", TORCH_MLP, "PyTorch")]),
    *planted_cases(STATS, [("calls torch", TORCH_STATS, "PyTorch")]),
    *planted_cases(INIT, [("calls torch", TORCH_INIT, "PyTorch")]),
]
INDEPENDENT = {
    "mlp_activations": (MLP, INDEPENDENT_MLP),
    "layer_statistics": (STATS, INDEPENDENT_STATS),
    "init_weights": (INIT, INDEPENDENT_INIT),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, INDEPENDENT
)


# --- knowledge check -----------------------------------------------------------------------------


KNOWLEDGE_CHECKS = [("test_answer_q1", "answer_q1", "b"), ("test_answer_q2", "answer_q2", "c")]


@pytest.mark.parametrize("grade_id, name, key", KNOWLEDGE_CHECKS)
def test_every_wrong_or_malformed_answer_loses_the_point(nb, grade_id, name, key):
    nb.assert_only_the_key_passes(grade_id, name, key, ("a", "b", "c", "d", "B", "", None))


@pytest.mark.parametrize("grade_id", [grade_id for grade_id, _, _ in KNOWLEDGE_CHECKS])
def test_the_visible_part_of_a_knowledge_check_does_not_reveal_the_key(nb, grade_id):
    assert "==" not in nb.cell_source(grade_id).split("### BEGIN HIDDEN TESTS")[0]
