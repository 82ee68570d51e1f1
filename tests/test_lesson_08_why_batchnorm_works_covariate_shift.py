"""Lesson 08, the covariate-shift exercises (input_shift, gradient_ics): the notebook's own
grade cells (hidden tests included) against planted bugs, including those found in review, and
correct implementations written differently from the solution. The rest of the lesson is
tested in tests/test_lesson_08_why_batchnorm_works.py.

Every planted bug must lose the points of its exercise's grade cell, with a failure message
naming the mistake; an independently written correct implementation keeps full points.
"""

from __future__ import annotations

import pytest

from tests.harness import Template, planted, planted_and_correct_tests

pytestmark = pytest.mark.slow

# --- covariate shift ----------------------------------------------------------------------------

SHIFT = ["test_input_shift"]
ICS = ["test_gradient_ics"]

_SHIFT_SOURCE = """
def _record(model, layer, x):
    seen = []
    handle = layer.{hook}(lambda module, *args: seen.append({grab}.detach().clone()))
    with torch.no_grad():
        model(x)
{remove}
    return seen[0]


def input_shift(model, layer, x, update):
    before = _record(model, layer, x)
    update()
    after = _record(model, layer, x)
    mean = (after.mean(0) - before.mean(0)).abs().mean()
    std = (after.std(0, correction={correction}) - before.std(0, correction={correction})).abs()
    return {result}
"""
_SHIFT_DEFAULTS = {
    "hook": "register_forward_pre_hook",
    "grab": "args[0][0]",
    "remove": "    handle.remove()",
    "correction": 0,
    "result": "float(mean), float(std.mean())",
}
_SHIFT_TEMPLATE = Template(_SHIFT_SOURCE, _SHIFT_DEFAULTS)


SHIFT_BUGS = {
    "the output of layer was recorded": planted(
        _SHIFT_TEMPLATE, hook="register_forward_hook", grab="args[1]"
    ),
    "left a hook registered": planted(_SHIFT_TEMPLATE, remove=""),
    "the unbiased std": planted(_SHIFT_TEMPLATE, correction=1),
    "the mean of |after - before|": planted(
        _SHIFT_TEMPLATE,
        result="float((after - before).abs().mean()), float((after - before).abs().mean())",
    ),
    "called update() 2 times": planted(_SHIFT_TEMPLATE, ("    update()\n", "    update()\n" * 2)),
    "called update() 0 times": planted(_SHIFT_TEMPLATE, ("    update()\n", "")),
    "evaluation mode": planted(
        _SHIFT_TEMPLATE,
        (
            "    with torch.no_grad():\n        model(x)",
            "    was = model.training\n    with torch.no_grad():\n        model.eval()(x)\n"
            "    model.train(was)",
        ),
    ),
    "the model was switched to training mode while recording; record in the model's current "
    "mode": planted(
        _SHIFT_TEMPLATE,
        (
            "    with torch.no_grad():\n        model(x)",
            "    was = model.training\n    with torch.no_grad():\n        model.train()(x)\n"
            "    model.train(was)",
        ),
    ),
    "left the model in training mode; it looks like the model was switched to training mode": (
        planted(
            _SHIFT_TEMPLATE, ("    before = _record(", "    model.train()\n    before = _record(")
        )
    ),
    "a tuple (mean_shift, std_shift)": planted(_SHIFT_TEMPLATE, result="float(mean)"),
}


@pytest.mark.parametrize("hint", list(SHIFT_BUGS))
def test_input_shift_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(SHIFT, SHIFT_BUGS[hint], hint)


def test_independent_input_shift_keeps_the_points(nb):
    # A forward hook on the previous module would see the same tensor only in a chain; this
    # one uses the input argument of a forward hook and numpy statistics.
    code = """
def input_shift(model, layer, x, update):
    stats = []

    def hook(module, inputs, output):
        h = inputs[0].detach().numpy()
        stats.append((h.mean(axis=0), h.std(axis=0)))

    for step in range(2):
        if step:
            update()
        handle = layer.register_forward_hook(hook)
        try:
            with torch.no_grad():
                model(x)
        finally:
            handle.remove()
    (m0, s0), (m1, s1) = stats
    return np.abs(m1 - m0).mean(), np.abs(s1 - s0).mean()
"""
    assert nb.score(SHIFT, code=code) == 2


_ICS_SOURCE = """
def gradient_ics(model, loss_fn, layer, lr):
    modules = list(model)
    moving = [p for m in modules[{select}] for p in m.parameters()]
    every = list(model.parameters())
    grads = dict(zip(every, torch.autograd.grad(loss_fn(), every)))
    g0 = grads[layer.weight]
    saved = [p.detach().clone() for p in every]
    with torch.no_grad():
        for p in moving:
            p.add_({sign} lr * grads[p])
    (g1,) = torch.autograd.grad(loss_fn(), [layer.weight])
{restore}
    cos = (g0 * g1).sum() / ({denominator})
    return float({difference}), float(cos)
"""
_ICS_DEFAULTS = {
    "select": ": modules.index(layer)",
    "sign": "-",
    "restore": """
    with torch.no_grad():
        for p, w in zip(every, saved):
            p.copy_(w)
""".strip("\n"),
    "denominator": "g0.norm() * g1.norm()",
    "difference": "(g0 - g1).norm()",
}
_ICS_TEMPLATE = Template(_ICS_SOURCE, _ICS_DEFAULTS)


ICS_BUGS = {
    "the layer itself took the step too": planted(
        _ICS_TEMPLATE, select=": modules.index(layer) + 1"
    ),
    "every layer took the step": planted(_ICS_TEMPLATE, select=":"),
    "only the module right before the layer": planted(
        _ICS_TEMPLATE, select="max(modules.index(layer) - 1, 0) : modules.index(layer)"
    ),
    "a step along +grad": planted(_ICS_TEMPLATE, sign="+"),
    "a relative difference": planted(_ICS_TEMPLATE, difference="(g0 - g1).norm() / g0.norm()"),
    "an unnormalized dot product": planted(_ICS_TEMPLATE, denominator="1.0"),
    "left the parameters moved": planted(_ICS_TEMPLATE, restore="    pass"),
    "step every parameter of the modules before layer": planted(  # the wrong layer
        _ICS_TEMPLATE,
        ("grads[layer.weight]", "grads[every[0]]"),
        ("[layer.weight])", "[every[0]])"),
        select=": modules.index(layer)",
    ),
}


@pytest.mark.parametrize("hint", list(ICS_BUGS))
def test_gradient_ics_bugs_lose_the_points(nb, hint):
    nb.assert_loses_points(ICS, ICS_BUGS[hint], hint)


def test_independent_gradient_ics_keeps_the_points(nb):
    # Moves the earlier modules with an optimizer and restores them from a state_dict.
    code = """
import copy


def gradient_ics(model, loss_fn, layer, lr):
    position = next(i for i, m in enumerate(model) if m is layer)
    earlier = [p for m in list(model)[:position] for p in m.parameters()]
    saved = copy.deepcopy(model.state_dict())
    model.zero_grad()
    loss_fn().backward()
    first = layer.weight.grad.clone()
    if earlier:
        torch.optim.SGD(earlier, lr=lr).step()
    model.zero_grad()
    loss_fn().backward()
    second = layer.weight.grad.clone()
    model.load_state_dict(saved)
    a, b = first.flatten().numpy(), second.flatten().numpy()
    return np.linalg.norm(a - b), a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
"""
    assert nb.score(ICS, code=code) == 3


# --- found in review: mistakes the first checks missed or did not name ---------------------------

_RECORD_AFTER_UPDATE = """
def input_shift(model, layer, x, update):
    store = []
    hook = lambda m, i: store.append(i[0].detach().clone())
{body}
    a, b = store
    return (float((b.mean(0) - a.mean(0)).abs().mean()),
            float((b.std(0, correction=0) - a.std(0, correction=0)).abs().mean()))
"""

REVIEW_BUGS = [
    (
        SHIFT,
        planted(
            _RECORD_AFTER_UPDATE,
            body="""
    h = layer.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(x)
    update()
    with torch.no_grad():
        model(x)
    h.remove()""",
        ),
        "still registered while update() ran",
    ),
    (
        SHIFT,
        planted(
            _RECORD_AFTER_UPDATE,
            body="""
    with torch.no_grad():
        for step in range(2):
            if step:
                update()
            h = layer.register_forward_pre_hook(hook)
            model(x)
            h.remove()""",
        ),
        "inside torch.no_grad()",
    ),
    (
        SHIFT,
        planted(
            _RECORD_AFTER_UPDATE,
            body="""
    for step in range(2):
        if step:
            update()
        h = layer.register_forward_pre_hook(hook)
        with torch.no_grad():
            model.eval()(x)
        h.remove()""",
        ),
        "left the model in eval mode",
    ),
]


REVIEW_CORRECT = {
    "input_shift: the prefix of the Sequential": (
        SHIFT,
        """
def input_shift(model, layer, x, update):
    idx = list(model).index(layer)
    with torch.no_grad():
        a = model[:idx](x)
    update()
    with torch.no_grad():
        b = model[:idx](x)
    return (float((b.mean(0) - a.mean(0)).abs().mean()),
            float((b.var(0, unbiased=False).sqrt() - a.var(0, unbiased=False).sqrt()).abs().mean()))
""",
    ),
    "gradient_ics: p.data, tensors returned": (
        ICS,
        """
def gradient_ics(model, loss_fn, layer, lr):
    k = [i for i, m in enumerate(model) if m is layer][0]
    earlier = list(model[:k].parameters())
    G = torch.autograd.grad(loss_fn(), [layer.weight])[0]
    gs = torch.autograd.grad(loss_fn(), earlier) if earlier else []
    old = [p.data.clone() for p in earlier]
    for p, g in zip(earlier, gs):
        p.data.add_(g, alpha=-lr)
    G2 = torch.autograd.grad(loss_fn(), [layer.weight])[0]
    for p, o in zip(earlier, old):
        p.data.copy_(o)
    return torch.dist(G, G2), torch.nn.functional.cosine_similarity(
        G.reshape(1, -1), G2.reshape(1, -1))[0]
""",
    ),
}


test_review_mistakes_lose_the_points_and_are_named, test_review_correct_variants_keep_the_points = (
    planted_and_correct_tests(
        [pytest.param(*bug, id=bug[-1]) for bug in REVIEW_BUGS], REVIEW_CORRECT
    )
)
