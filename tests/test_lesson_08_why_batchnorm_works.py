"""Lesson 08: the notebook's own grade cells (hidden tests included) against planted bugs.

Here: the solution, its points and experiments, the knowledge check, and the exercises on
scale invariance (output_changes, weight_gradient_norms) and on the loss landscape
(losses_along_gradient, gradient_changes). The covariate-shift exercises (input_shift,
gradient_ics) are in tests/test_lesson_08_why_batchnorm_works_covariate_shift.py.

Every planted bug must lose the points of its exercise's grade cell, with a failure message
naming the mistake; an independently written correct implementation keeps full points. The
lesson allows PyTorch, so there is no torch guard to test here.
"""

from __future__ import annotations

import pytest

from tests.harness import planted, planted_and_correct_tests, solution_tests

pytestmark = pytest.mark.slow

POINTS = {
    "test_output_changes": 2,
    "test_weight_gradient_norms": 2,
    "test_losses_along_gradient": 3,
    "test_gradient_changes": 3,
    "test_input_shift": 2,
    "test_gradient_ics": 3,
    "test_answer_q1": 1,
    "test_answer_q2": 1,
}


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    POINTS, others=(), written={"written_ics": 3, "written_scale": 2}
)


def test_exercise_stubs_keep_their_return_outside_the_fence(nb):
    for grade_id in (
        "output_changes",
        "weight_gradient_norms",
        "losses_along_gradient",
        "gradient_changes",
        "input_shift",
        "gradient_ics",
    ):
        tail = nb.cell_source(grade_id).split("### END SOLUTION", 1)[1]
        assert tail.strip().startswith("return "), grade_id


def test_the_experiments_show_what_the_text_says(nb):
    ns = nb.namespace
    np = ns["np"]
    # 1.1: the exact 1/alpha law with eps=0, no dependence on alpha without BatchNorm
    slope = ns["loglog_slope"]
    alphas, norms, large = ns["alphas"], ns["grad_norms"], ns["alphas"] >= 1e-2
    assert abs(slope(alphas, norms["Linear -> BatchNorm (eps=0)"]) + 1) < 1e-9
    assert abs(slope(alphas, norms["Linear, no BatchNorm"])) < 1e-9
    eps_law = slope(alphas[large], norms["Linear -> BatchNorm (eps=1e-5)"][large])
    assert -1.01 < eps_law < -0.98
    assert slope(alphas[:3], norms["Linear -> BatchNorm (eps=1e-5)"][:3]) > -0.5  # bent by eps
    # 4.1: the BatchNorm landscape is smoother along the gradient (measured 5.4x and 3.5x)
    loss_range = ns["loss_range"]
    assert np.median(loss_range["bn"]) * 3 < np.median(loss_range["none"])
    changes = ns["largest_change"]
    assert np.median(changes["bn"]) * 2 < np.median(changes["none"])
    # 4.2: BatchNorm shrinks the input shift; noisy BatchNorm has the largest; it still trains
    shift = ns["shift"]
    assert np.median(shift["bn"]) * 4 < np.median(shift["none"]) < np.median(shift["noisy"]) / 2
    accuracy = {norm: run.test_accuracy for norm, run in ns["runs"].items()}
    assert accuracy["noisy"] > 0.9 and accuracy["bn"] > 0.9
    assert abs(accuracy["noisy"] - accuracy["bn"]) < 0.03
    # 4.2: the gradient ICS does not vanish with BatchNorm
    assert np.median(ns["ics_cosine"]["bn"]) < 0.5
    assert np.median(ns["ics_cosine"]["bn"]) < np.median(ns["ics_cosine"]["none"])
    # 4.4: seeds 0-2, test accuracy: no BN (0.23, 0.67, 0.81) < BN (0.94-0.96) ~ noisy (0.94-0.95)
    seeds = {norm: np.array(values) for norm, values in ns["seed_accuracy"].items()}
    assert ns["SEEDS"] == (0, 1, 2) and seeds["bn"][1] == accuracy["bn"]
    assert np.median(seeds["none"]) + 0.15 < min(seeds["bn"].min(), seeds["noisy"].min())
    assert seeds["none"].max() < min(seeds["bn"].min(), seeds["noisy"].min())
    assert abs(np.median(seeds["bn"]) - np.median(seeds["noisy"])) < 0.03


# --- scale invariance ---------------------------------------------------------------------------

OUTPUT = ["test_output_changes"]
GRADIENT = ["test_weight_gradient_norms"]

_OUTPUT_TEMPLATE = """
def output_changes(layer, weight, x, alphas):
    base = layer(x, weight)
    result = []
    for alpha in alphas:
{body}
    return np.array(result)
"""


def _indented(body: str) -> str:
    return "\n".join("        " + line for line in body.strip().splitlines())


def _output_with(body: str) -> str:
    return planted(_OUTPUT_TEMPLATE, body=_indented(body))


OUTPUT_BUGS = {
    "the absolute change": _output_with(
        "result.append(float(torch.linalg.norm(layer(x, alpha * weight) - base)))"
    ),
    "divided by ||f(alpha W)||": _output_with("""
scaled = layer(x, alpha * weight)
result.append(float(torch.linalg.norm(scaled - base) / torch.linalg.norm(scaled)))
"""),
    "changed weight in place": _output_with("""
weight *= alpha
result.append(float(torch.linalg.norm(layer(x, weight) - base) / torch.linalg.norm(base)))
"""),
    "changed x in place": _output_with("""
scaled = layer(x.mul_(1.0), alpha * weight)  # harmless...
x += 0.0 * alpha + 1e-3  # ...but this one is not
result.append(float(torch.linalg.norm(scaled - base) / torch.linalg.norm(base)))
"""),
    "compare layer(x, alpha * weight)": _output_with(  # alpha never applied
        "result.append(float(torch.linalg.norm(layer(x, weight) - base) / torch.linalg.norm(base)))"
    ),
}
"""substring of the expected failure message -> planted bug."""


@pytest.mark.parametrize("hint", list(OUTPUT_BUGS))
def test_output_changes_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(OUTPUT, OUTPUT_BUGS[hint], hint)


def test_independent_output_changes_keeps_the_points(nb):
    code = """
def output_changes(layer, weight, x, alphas):
    f0 = layer(x, weight).detach().numpy()
    outs = [layer(x, weight * a).detach().numpy() for a in alphas]
    return [np.sqrt(((o - f0) ** 2).sum()) / np.sqrt((f0 ** 2).sum()) for o in outs]
"""
    assert nb.score(OUTPUT, code=code) == 2


_GRADIENT_TEMPLATE = """
def weight_gradient_norms(layer, weight, x, alphas, upstream):
    result = []
    for alpha in alphas:
{body}
    return np.array(result)
"""


def _gradient_with(body: str) -> str:
    return planted(_GRADIENT_TEMPLATE, body=_indented(body))


GRADIENT_BUGS = {
    "the gradient with respect to W": _gradient_with("""
w = weight.clone().requires_grad_(True)
(g,) = torch.autograd.grad((layer(x, alpha * w) * upstream).sum(), w)
result.append(float(torch.linalg.norm(g)))
"""),
    "(or with alpha applied to x)": _gradient_with("""
w = weight.clone().requires_grad_(True)
(g,) = torch.autograd.grad((layer(alpha * x, w) * upstream).sum(), w)
result.append(float(torch.linalg.norm(g)))
"""),
    "the squared norm": _gradient_with("""
v = (alpha * weight).detach().requires_grad_(True)
(g,) = torch.autograd.grad((layer(x, v) * upstream).sum(), v)
result.append(float((g ** 2).sum()))
"""),
    "the gradient of out.sum()": _gradient_with("""
v = (alpha * weight).detach().requires_grad_(True)
(g,) = torch.autograd.grad(layer(x, v).sum(), v)
result.append(float(torch.linalg.norm(g)))
"""),
    "the gradient with respect to x": _gradient_with("""
v = alpha * weight
xg = x.clone().requires_grad_(True)
(g,) = torch.autograd.grad((layer(xg, v) * upstream).sum(), xg)
result.append(float(torch.linalg.norm(g)))
"""),
    "changed weight in place": _gradient_with("""
weight.mul_(alpha)
v = weight.detach().clone().requires_grad_(True)
(g,) = torch.autograd.grad((layer(x, v) * upstream).sum(), v)
result.append(float(torch.linalg.norm(g)))
"""),
}


@pytest.mark.parametrize("hint", list(GRADIENT_BUGS))
def test_weight_gradient_norms_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(GRADIENT, GRADIENT_BUGS[hint], hint)


def test_independent_weight_gradient_norms_keeps_the_points(nb):
    code = """
def weight_gradient_norms(layer, weight, x, alphas, upstream):
    out = np.empty(len(alphas))
    for k, a in enumerate(alphas):
        v = torch.nn.Parameter(weight * a)
        layer(x, v).mul(upstream).sum().backward()
        out[k] = v.grad.pow(2).sum().sqrt().item()
    return out
"""
    assert nb.score(GRADIENT, code=code) == 2


# --- the landscape along the gradient -----------------------------------------------------------

LOSSES = ["test_losses_along_gradient"]
CHANGES = ["test_gradient_changes"]

_LANDSCAPE_TEMPLATE = """
def {name}(model, loss_fn, step_sizes):
    params = list(model.parameters())
{gradient}
    start = [p.detach().clone() for p in params]
    out = []
    for eta in step_sizes:
        with torch.no_grad():
            for p, w, g in zip(params, start, grads):
{step}
{measure}
{restore}
    return np.array(out)
"""
_AUTOGRAD = "    grads = torch.autograd.grad(loss_fn(), params)"
_STEP = "                p.copy_(w - eta * g)"
_RESTORE = """
    with torch.no_grad():
        for p, w in zip(params, start):
            p.copy_(w)
"""
_MEASURE_LOSS = """
        with torch.no_grad():
            out.append(float(loss_fn()))
"""
_MEASURE_CHANGE = """
        moved = torch.autograd.grad(loss_fn(), params)
        out.append(float(torch.sqrt(sum(((g - m) ** 2).sum() for g, m in zip(grads, moved)))))
"""


def _landscape_with(
    name: str,
    measure: str,
    gradient: str = _AUTOGRAD,
    step: str = _STEP,
    restore: str = _RESTORE,
) -> str:
    return planted(
        _LANDSCAPE_TEMPLATE,
        name=name,
        gradient=gradient,
        step=step,
        measure=measure.strip("\n"),
        restore=restore.strip("\n") or "    pass",
    )


def _landscape_bugs(name: str, measure: str) -> dict[str, str]:
    """The mistakes both landscape measurements can make, as hint -> source."""
    return {
        "left the parameters moved": _landscape_with(name, measure, restore=""),
        "a step along +g": _landscape_with(
            name, measure, step="                p.copy_(w + eta * g)"
        ),
        "steps that accumulate": _landscape_with(
            name, measure, step="                p -= eta * g"
        ),
        "stale .grad": _landscape_with(
            name,
            measure,
            gradient="""
    loss_fn().backward()
    grads = [p.grad.clone() for p in params]
""".strip("\n"),
        ),
        "minus the full gradient": _landscape_with(  # a random direction
            name,
            measure,
            gradient=_AUTOGRAD
            + "\n    gen = torch.Generator().manual_seed(0)"
            + "\n    grads = [torch.randn(g.shape, generator=gen, dtype=g.dtype) for g in grads]",
        ),
        "replaced the model's parameters": _landscape_with(
            name,
            measure,
            restore="""
    for module in model.modules():
        for key, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[key] = torch.nn.Parameter(p.detach().clone())
""",
        ),
    }


LOSS_BUGS = _landscape_bugs("losses_along_gradient", _MEASURE_LOSS) | {
    "a unit direction": _landscape_with(
        "losses_along_gradient",
        _MEASURE_LOSS,
        gradient=_AUTOGRAD
        + "\n    size = torch.sqrt(sum((g ** 2).sum() for g in grads))"
        + "\n    grads = [g / size for g in grads]",
    ),
}
CHANGE_BUGS = _landscape_bugs("gradient_changes", _MEASURE_CHANGE) | {
    "a relative change": _landscape_with(
        "gradient_changes",
        _MEASURE_CHANGE
        + "        out[-1] /= float(torch.sqrt(sum((g ** 2).sum() for g in grads)))\n",
    ),
    "the norm of the gradient at the moved point": _landscape_with(
        "gradient_changes",
        """
        moved = torch.autograd.grad(loss_fn(), params)
        out.append(float(torch.sqrt(sum((m ** 2).sum() for m in moved))))
""",
    ),
    "pile up in .grad": _landscape_with(  # the second backward() adds to the first
        "gradient_changes",
        """
        loss_fn().backward()
        moved = [p.grad.clone() for p in params]
        out.append(float(torch.sqrt(sum(((g - m) ** 2).sum() for g, m in zip(grads, moved)))))
""",
        gradient="""
    model.zero_grad()
    loss_fn().backward()
    grads = [p.grad.clone() for p in params]
""".strip("\n"),
    ),
    "the squared norm": _landscape_with(
        "gradient_changes",
        """
        moved = torch.autograd.grad(loss_fn(), params)
        out.append(float(sum(((g - m) ** 2).sum() for g, m in zip(grads, moved))))
""",
    ),
}


@pytest.mark.parametrize("hint", list(LOSS_BUGS))
def test_losses_along_gradient_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(LOSSES, LOSS_BUGS[hint], hint)


@pytest.mark.parametrize("hint", list(CHANGE_BUGS))
def test_gradient_changes_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(CHANGES, CHANGE_BUGS[hint], hint)


def test_independent_landscape_measurements_keep_the_points(nb):
    # Flat vectors and a saved state_dict, zero_grad + backward: another shape of solution.
    code = """
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def _flat_gradient(model, loss_fn):
    model.zero_grad()
    loss_fn().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _walk(model, loss_fn, step_sizes, measure):
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    w = parameters_to_vector(model.parameters()).detach()
    g = _flat_gradient(model, loss_fn)
    values = []
    for eta in step_sizes:
        with torch.no_grad():
            vector_to_parameters(w - eta * g, model.parameters())
        values.append(measure(g))
    model.load_state_dict(saved)
    return np.array(values)


def losses_along_gradient(model, loss_fn, step_sizes):
    def measure(g):
        with torch.no_grad():
            return loss_fn().item()
    return _walk(model, loss_fn, step_sizes, measure)


def gradient_changes(model, loss_fn, step_sizes):
    return _walk(
        model, loss_fn, step_sizes, lambda g: (g - _flat_gradient(model, loss_fn)).norm().item()
    )
"""
    assert nb.score(LOSSES + CHANGES, code=code) == 6


def test_wrong_answers_lose_the_knowledge_points(nb):
    for grade_id, name in (("test_answer_q1", "answer_q1"), ("test_answer_q2", "answer_q2")):
        nb.assert_loses_points([grade_id], f'{name} = "a"', "not the expected answer")
        nb.assert_loses_points([grade_id], f'{name} = "e"', "must be one of")


# --- found in review: mistakes the first checks missed or did not name ---------------------------

REVIEW_BUGS = [
    (
        OUTPUT,
        _output_with(
            "result.append(float(torch.linalg.norm(layer(alpha * x, weight) - base)"
            " / torch.linalg.norm(base)))"
        ),
        "alpha applied to x",
    ),
    (
        LOSSES,
        planted(
            _landscape_with("losses_along_gradient", _MEASURE_LOSS),
            ("    params = list(", "    model.eval()\n    params = list(", 1),
        ),
        "left the model in eval mode",
    ),
]


REVIEW_CORRECT = {
    "output_changes: a list of 0-d tensors": (
        OUTPUT,
        """
def output_changes(layer, weight, x, alphas):
    with torch.no_grad():
        base = layer(x, weight)
        return [torch.dist(layer(x, a * weight), base) / base.norm() for a in alphas]
""",
    ),
    "weight_gradient_norms: torch.func.grad": (
        GRADIENT,
        """
def weight_gradient_norms(layer, weight, x, alphas, upstream):
    g = torch.func.grad(lambda v: (layer(x, v) * upstream).sum())
    return [g(a * weight).norm().item() for a in alphas]
""",
    ),
    "losses_along_gradient: backward, deepcopy(state_dict), load_state_dict": (
        LOSSES,
        """
import copy
def losses_along_gradient(model, loss_fn, step_sizes):
    saved = copy.deepcopy(model.state_dict())
    model.zero_grad()
    loss_fn().backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    out = []
    for eta in step_sizes:
        model.load_state_dict(saved)
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= eta * g
            out.append(loss_fn().item())
    model.load_state_dict(saved)
    return out
""",
    ),
    "gradient_changes: parameters_to_vector and backward": (
        CHANGES,
        """
from torch.nn.utils import parameters_to_vector as p2v, vector_to_parameters as v2p
def gradient_changes(model, loss_fn, step_sizes):
    params = list(model.parameters())
    w0 = p2v(params).detach().clone()
    model.zero_grad()
    loss_fn().backward()
    g0 = p2v([p.grad for p in params]).clone()
    out = []
    for eta in step_sizes:
        with torch.no_grad():
            v2p(w0 - eta * g0, params)
        model.zero_grad()
        loss_fn().backward()
        out.append(torch.linalg.vector_norm(g0 - p2v([p.grad for p in params])).item())
    with torch.no_grad():
        v2p(w0, params)
    return np.array(out)
""",
    ),
}


test_review_mistakes_lose_the_points_and_are_named, test_review_correct_variants_keep_the_points = (
    planted_and_correct_tests(
        [pytest.param(*bug, id=bug[-1]) for bug in REVIEW_BUGS], REVIEW_CORRECT
    )
)
