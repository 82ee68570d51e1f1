"""Lesson 05: the notebook's own grade cells (hidden tests included) against planted bugs.

build_mlp, train_step and accuracy each get classic mistakes (layer order, biases before
BatchNorm, the mode a network is left in, how the update and the accuracy are summed up) that
must lose their cell's points with a message naming the mistake; independently written correct
versions keep the points and versions that call PyTorch lose them. The experiments the text
describes must show what the text says.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.harness import planted, planted_and_correct_tests, planted_cases, solution_tests

pytestmark = pytest.mark.slow

BUILD = ["test_build_mlp"]
STEP = ["test_train_step"]
ACCURACY = ["test_accuracy"]


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    {**dict.fromkeys(BUILD, 3), **dict.fromkeys(STEP, 4), **dict.fromkeys(ACCURACY, 2)},
    others=("test_answer_q1", "test_answer_q2"),
    written={"written_claims": 3},
)


@pytest.mark.parametrize("grade_id", ["build_mlp", "train_step", "accuracy"])
def test_exercise_stub_keeps_its_return_outside_the_fence(nb, grade_id):
    assert nb.cell_source(grade_id).split("### END SOLUTION", 1)[1].strip().startswith("return ")


def test_the_experiments_show_what_the_text_says(nb):
    ns = nb.namespace
    # 5.1: eight hidden layers at init scale 1, seeds 0-2, steps to 90 % test accuracy
    plain, normalized = ns["race"][False], ns["race"][True]
    assert ns["RACE_LRS"][0] == 0.1 and ns["SEEDS"] == (0, 1, 2)
    assert plain[0].min() > normalized[0].max()  # same lr 0.1: no seed overlap (165 vs 42)
    assert ns["speedup_same"] > 2.5 and ns["speedup_best"] > 2.5  # measured 3.9 and 4.4
    assert np.isinf(plain[-1]).all() and np.isfinite(normalized).all()  # lr 1: only BN gets there
    # 5.1, gradient flow (seed 0, lr 0.1): update/weight over the first 10 steps, per layer,
    # measured 7e-4 to 2e-3 without BN and 8e-3 to 3e-2 with it
    early = ns["early_ratio"]
    assert early["without BN"].max() < 4e-3 < 5e-3 < early["with BN"].min()
    assert np.median(early["with BN"]) > 8 * np.median(early["without BN"])
    # 5.2: the plain network diverges at a rate where the BatchNorm network still trains
    lr_plain, lr_bn = ns["lr_acc"][False], ns["lr_acc"][True]
    assert any(p < 0.2 and b > 0.9 for p, b in zip(lr_plain, lr_bn, strict=True))
    # 5.3: BatchNorm trains at every init scale, the plain network does not
    assert min(ns["init_acc"][True]) > 0.5 and min(ns["init_acc"][False]) < 0.2
    # 5.4: the bias before BatchNorm gets no gradient beyond rounding
    assert ns["largest_bias_grad"] < 1e-12 < ns["largest_weight_grad"]
    # 5.5: the noise falls with the batch size
    assert all(a > b for a, b in zip(ns["spread"], ns["spread"][1:], strict=False))
    # 5.6: sorted batches in training mode collapse, eval mode does not
    assert ns["results"]["train mode, sorted, 45"] < 0.5 < ns["results"]["eval mode (correct)"]


# --- build_mlp ----------------------------------------------------------------------------------

_BUILD_TEMPLATE = """
def build_mlp(dims, use_bn, rng, init_scale=RELU_GAIN):
    layers = []
    pairs = list(zip(dims[:-1], dims[1:]))
    for i, (d_in, d_out) in enumerate(pairs):
        last = i == len(pairs) - 1
{body}
    return layers
"""


def _build_with(body: str) -> str:
    indented = "\n".join("        " + line for line in body.strip().splitlines())
    return planted(_BUILD_TEMPLATE, body=indented)


BUILD_BUGS = {
    "after the ReLU": _build_with("""
layers.append(Linear(d_in, d_out, rng, bias=last or not use_bn, init_scale=init_scale))
if not last:
    layers.append(ReLU())
    if use_bn:
        layers.append(BatchNorm1d(d_out))
"""),
    "keeps its bias although BatchNorm1d follows": _build_with("""
layers.append(Linear(d_in, d_out, rng, init_scale=init_scale))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "has no bias, but no BatchNorm1d follows": _build_with("""
layers.append(Linear(d_in, d_out, rng, bias=not use_bn, init_scale=init_scale))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "must be a plain Linear": _build_with("""
layers.append(Linear(d_in, d_out, rng, bias=not use_bn, init_scale=init_scale))
layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "use_bn=False, but": _build_with("""
layers.append(Linear(d_in, d_out, rng, bias=last, init_scale=init_scale))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()]
"""),
    "use_bn=True, but there is no BatchNorm1d": _build_with("""
layers.append(Linear(d_in, d_out, rng, init_scale=init_scale))
if not last:
    layers.append(ReLU())
"""),
    "init_scale was not passed": _build_with("""
layers.append(Linear(d_in, d_out, rng, bias=last or not use_bn))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "give every Linear the rng": _build_with("""
layers.append(Linear(d_in, d_out, np.random.default_rng(i), bias=last or not use_bn,
                     init_scale=init_scale))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "weight of shape": _build_with("""
layers.append(Linear(d_out, d_in, rng, bias=last or not use_bn, init_scale=init_scale))
if not last:
    layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
"""),
    "create the layers in order": """
def build_mlp(dims, use_bn, rng, init_scale=RELU_GAIN):
    # the output layer is created first, so it takes the first random numbers
    out = Linear(dims[-2], dims[-1], rng, init_scale=init_scale)
    layers = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(Linear(d_in, d_out, rng, bias=not use_bn, init_scale=init_scale))
        layers += [BatchNorm1d(d_out), ReLU()] if use_bn else [ReLU()]
    return layers + [out]
""",
}
"""substring of the expected failure message -> planted bug."""

INDEPENDENT_BUILD = """
def build_mlp(dims, use_bn, rng, init_scale=RELU_GAIN):
    *hidden, output = [(dims[k], dims[k + 1]) for k in range(len(dims) - 1)]
    layers = []
    for fan_in, fan_out in hidden:
        block = [Linear(fan_in, fan_out, rng, bias=not use_bn, init_scale=init_scale)]
        if use_bn:
            block.append(BatchNorm1d(fan_out))
        layers.extend(block + [ReLU()])
    return layers + [Linear(*output, rng, init_scale=init_scale)]
"""

TORCH_BUILD = """
import torch

_solution = build_mlp


def build_mlp(dims, use_bn, rng, init_scale=RELU_GAIN):
    torch.manual_seed(0)
    return _solution(dims, use_bn, rng, init_scale)
"""


# --- train_step ---------------------------------------------------------------------------------

_STEP_TEMPLATE = """
def train_step(layers, x, y, lr):
{mode}
    out = x
    for layer in layers:
        out = layer.forward(out)
    loss, grad = softmax_cross_entropy(out, y)
    for layer in reversed(layers):
        grad = layer.backward(grad)
{update}
    return loss
"""
_TRAIN = """
    for layer in layers:
        layer.train()
"""
_UPDATE = """
    for layer in layers:
        for p in layer.parameters():
            p.data -= {step}
"""


def _step_with(mode: str = _TRAIN, step: str = "lr * p.grad", update: str | None = None) -> str:
    update = planted(_UPDATE, step=step) if update is None else update
    return planted(_STEP_TEMPLATE, mode=mode.rstrip(), update=update.rstrip())


STEP_BUGS = {
    "wrong sign": _step_with(step="-lr * p.grad"),
    "learning rate was not applied": _step_with(step="p.grad"),
    "stayed in evaluation mode": _step_with(mode=""),
    "gamma and beta were not updated": _step_with(
        update="""
    for layer in layers:
        if isinstance(layer, Linear):
            for p in layer.parameters():
                p.data -= lr * p.grad
"""
    ),
    "Linear layers were not updated": _step_with(
        update="""
    for layer in layers:
        if not isinstance(layer, Linear):
            for p in layer.parameters():
                p.data -= lr * p.grad
"""
    ),
    "after the update": _step_with(
        update="""
    for layer in layers:
        for p in layer.parameters():
            p.data -= lr * p.grad
    out = x
    for layer in layers:
        out = layer.eval().forward(out)
    loss = softmax_cross_entropy(out, y)[0]
"""
    ),
    "the updated parameters": _step_with(step="lr * p.grad / len(x)"),  # a second 1/N
    "the returned loss": planted(
        _step_with(), ("    return loss\n", "    return loss * len(x)  # the summed loss\n", 1)
    ),
}
"""substring of the expected failure message -> planted bug."""
BACKWARD_IN_FORWARD_ORDER = planted(_step_with(), ("reversed(layers)", "layers", 1))

# Each layer is updated right after its own backward: its backward has already used the old
# weights for dx, so this interleaved order is correct too.
INDEPENDENT_STEP = """
def train_step(layers, x, y, lr):
    activations = [x]
    for layer in layers:
        layer.training = True
        activations.append(layer(activations[-1]))
    loss, upstream = softmax_cross_entropy(activations[-1], y)
    for layer in layers[::-1]:
        upstream = layer.backward(upstream)
        for parameter in layer.parameters():
            parameter.data = parameter.data - lr * parameter.grad
    return float(loss)
"""

TORCH_STEP = """
import torch
import torch.nn.functional as F

_solution = train_step


def train_step(layers, x, y, lr):
    loss = _solution(layers, x, y, lr)
    return F.relu(torch.tensor(loss)).item()
"""


# --- accuracy -----------------------------------------------------------------------------------

_ACCURACY_TEMPLATE = """
def _predict(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x.argmax(axis=1)


def accuracy(layers, x, y, batch_size=256):
{mode}
    pieces = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    hits = [_predict(layers, xb) == yb for xb, yb in pieces]
    return {result}
"""
_EVAL = """
    for layer in layers:
        layer.eval()
"""
_CORRECT_RESULT = "np.concatenate(hits).mean()"


def _accuracy_with(mode: str = _EVAL, result: str = _CORRECT_RESULT) -> str:
    return planted(_ACCURACY_TEMPLATE, mode=mode.rstrip() or "    pass", result=result)


ACCURACY_BUGS = {
    "still in training mode": _accuracy_with(mode=""),
    "per-batch accuracies": _accuracy_with(result="np.mean([h.mean() for h in hits])"),
    "incomplete batch was left out": _accuracy_with(
        result="np.concatenate([h for h in hits if len(h) == batch_size]).mean()"
    ),
    "only the first batch": _accuracy_with(result="hits[0].mean()"),
    "a percentage instead": _accuracy_with(result="100 * np.concatenate(hits).mean()"),
    "the number of correct predictions": _accuracy_with(result="np.concatenate(hits).sum()"),
    "changed the BatchNorm running statistics": _accuracy_with(
        mode="""
    for layer in layers:
        layer.train()
    _predict(layers, x[:8])  # a "warm-up" pass in training mode
    for layer in layers:
        layer.eval()
"""
    ),
}
"""substring of the expected failure message -> planted bug."""

INDEPENDENT_ACCURACY = """
def accuracy(layers, x, y, batch_size=256):
    for layer in layers:
        layer.train(False)
    chunks = np.array_split(np.arange(len(x)), max(1, -(-len(x) // batch_size)))
    predictions = []
    for rows in chunks:
        out = x[rows]
        for layer in layers:
            out = layer(out)
        predictions.extend(np.argmax(out, axis=1).tolist())
    return float(np.count_nonzero(np.array(predictions) == y)) / len(y)
"""

TORCH_ACCURACY = """
import torch

_solution = accuracy


def accuracy(layers, x, y, batch_size=256):
    return torch.tensor(_solution(layers, x, y, batch_size)).item()
"""


# --- every exercise: planted bugs lose the points, correct code keeps them ----------------------

PLANTED = [
    *(
        case
        for grade_ids, bugs in ((BUILD, BUILD_BUGS), (STEP, STEP_BUGS), (ACCURACY, ACCURACY_BUGS))
        for case in planted_cases(grade_ids, [(hint, code, hint) for hint, code in bugs.items()])
    ),
    *planted_cases(STEP, [("backward in forward order", BACKWARD_IN_FORWARD_ORDER, None)]),
    *(
        case
        for ids, code in ((BUILD, TORCH_BUILD), (STEP, TORCH_STEP), (ACCURACY, TORCH_ACCURACY))
        for case in planted_cases(ids, [("calls torch", code, "PyTorch")])
    ),
]
INDEPENDENT = {
    "build_mlp": (BUILD, INDEPENDENT_BUILD),
    "train_step": (STEP, INDEPENDENT_STEP),
    "accuracy": (ACCURACY, INDEPENDENT_ACCURACY),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, INDEPENDENT
)


# --- knowledge check -----------------------------------------------------------------------------


MALFORMED = ("B", "", None)


@pytest.mark.parametrize("question, key", [(1, "b"), (2, "b")])
def test_every_wrong_or_malformed_answer_loses_the_point(nb, question, key):
    nb.assert_only_the_key_passes(
        f"test_answer_q{question}", f"answer_q{question}", key, [*"abcd", *MALFORMED]
    )


@pytest.mark.parametrize("question", [1, 2])
def test_the_visible_part_of_a_knowledge_check_does_not_reveal_the_key(nb, question):
    visible, _ = nb.cell_source(f"test_answer_q{question}").split("### BEGIN HIDDEN TESTS")
    assert "==" not in visible
