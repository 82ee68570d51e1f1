"""utils.checks.networks: the torch oracle, its copy into utils.nn, and checks that can fail.

The implementations below are written here, in the shapes a learner would write them; the
lesson's own grade cells are exercised in tests/test_lesson_05_batchnorm_in_networks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from utils.checks import networks
from utils.checks.hidden.networks import (
    HIDDEN_ACCURACY_CASES,
    HIDDEN_STEP_CASES,
    check_accuracy_hidden,
    check_build_mlp_hidden,
    check_train_step_hidden,
)
from utils.checks.networks import (
    STEP_MISTAKES,
    VISIBLE_ACCURACY_CASES,
    VISIBLE_STEP_CASES,
    check_accuracy,
    check_build_mlp,
    check_train_step,
    layers_from_torch,
    numpy_state,
    read_network,
    torch_mlp,
    torch_state,
)
from utils.diagnose import CheckFailure
from utils.gradcheck import relative_error
from utils.guard import TorchUsedError
from utils.nn import BatchNorm1d, Linear, ReLU, softmax_cross_entropy
from utils.reference import as_tensor, to_numpy

ALL_STEP_CASES = VISIBLE_STEP_CASES + HIDDEN_STEP_CASES
ALL_ACCURACY_CASES = VISIBLE_ACCURACY_CASES + HIDDEN_ACCURACY_CASES


SQRT2 = np.sqrt(2)


def build_mlp(dims, use_bn, rng, init_scale=SQRT2):
    layers = []
    for i in range(1, len(dims)):
        last = i == len(dims) - 1
        layers.append(
            Linear(dims[i - 1], dims[i], rng, bias=last or not use_bn, init_scale=init_scale)
        )
        if not last:
            layers += [BatchNorm1d(dims[i]), ReLU()] if use_bn else [ReLU()]
    return layers


def forward(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def train_step(layers, x, y, lr):
    for layer in layers:
        layer.train()
    loss, grad = softmax_cross_entropy(forward(layers, x), y)
    for layer in layers[::-1]:
        grad = layer.backward(grad)
    for p in (p for layer in layers for p in layer.parameters()):
        p.data = p.data - lr * p.grad
    return loss


def accuracy(layers, x, y, batch_size=256):
    for layer in layers:
        layer.eval()
    hits = sum(
        int(np.sum(forward(layers, x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    )
    return hits / len(x)


# --- the oracle and the copy ------------------------------------------------------------------


@given(
    hidden=st.lists(st.integers(1, 6), min_size=0, max_size=3),
    use_bn=st.booleans(),
    bias_before_bn=st.booleans(),
    training=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_the_numpy_copy_computes_what_the_torch_model_computes(
    hidden, use_bn, bias_before_bn, training, seed
):
    dims = [5, *hidden, 3]
    model = torch_mlp(dims, use_bn, bias_before_bn=bias_before_bn, seed=seed).train(training)
    layers = layers_from_torch(model)
    state, reference = numpy_state(layers), torch_state(model)
    assert np.array_equal(state.parameters, reference.parameters)
    assert np.array_equal(state.running, reference.running)
    assert [layer.training for layer in layers] == [training] * len(layers)
    x = np.random.default_rng(seed).standard_normal((7, 5))
    with torch.no_grad():
        expected = to_numpy(model(as_tensor(x)))
    assert relative_error(forward(layers, x), expected) < 1e-12
    running = numpy_state(layers).running  # updated by both forwards in training mode
    assert relative_error(running, torch_state(model).running) < 1e-12


def test_torch_mlp_perturbs_every_default_away():
    model = torch_mlp((4, 6, 3), True, bias_before_bn=True, seed=1)
    bn = model[1]
    for tensor, default in (
        (bn.weight, 1.0),
        (bn.bias, 0.0),
        (bn.running_mean, 0.0),
        (bn.running_var, 1.0),
        (model[0].bias, 0.0),
    ):
        assert not torch.any(tensor == default)


def test_torch_mlp_drops_the_bias_before_batchnorm_only():
    model = torch_mlp((4, 6, 5, 3), True, perturb=False)
    assert [type(m).__name__ for m in model] == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
    ]
    assert model[0].bias is None and model[3].bias is None and model[6].bias is not None
    assert all(m.bias is not None for m in torch_mlp((4, 6, 3), False) if hasattr(m, "bias"))


# --- every known mistake is visible in the cases the checks use --------------------------------


@pytest.mark.parametrize("case", ALL_STEP_CASES, ids=lambda c: c.label)
def test_every_step_mistake_changes_the_loss_or_the_parameters(case):
    model = case.model()
    x, y = case.batches()[0]
    expected_loss, expected = networks._variant(model, x, y, case.lr, {})
    invisible = []
    for hint, options in STEP_MISTAKES.items():
        has_bn = case.use_bn and len(case.dims) > 2
        if ("BatchNorm" in hint or "evaluation mode" in hint) and not has_bn:
            continue  # a network without BatchNorm computes the same in both modes
        if "evaluation mode" in hint and not case.start_in_eval:
            continue  # nothing to forget in these cases
        loss, state = networks._variant(model, x, y, case.lr, options)
        if relative_error(state.parameters, expected.parameters) < 1e-6 and (
            abs(loss - expected_loss) < 1e-6
        ):
            invisible.append(hint)
    assert not invisible


def test_some_visible_step_case_starts_in_eval_mode():
    assert any(case.start_in_eval and case.use_bn for case in VISIBLE_STEP_CASES)


@pytest.mark.parametrize("case", ALL_ACCURACY_CASES, ids=lambda c: c.label)
def test_accuracy_cases_are_neither_trivial_nor_hopeless(case):
    model = torch_mlp(case.dims, case.use_bn, seed=case.seed)
    x, y = case.data(model)
    with torch.no_grad():
        acc = np.mean(to_numpy(model.eval()(as_tensor(x))).argmax(1) == y)
    assert 0.4 < acc < 1.0


def test_every_accuracy_mistake_gives_its_own_value_in_the_visible_case():
    (case,) = VISIBLE_ACCURACY_CASES
    model = torch_mlp(case.dims, case.use_bn, seed=case.seed)
    x, y = case.data(model)
    mistakes = networks._accuracy_mistakes(model, x, y, case.batch_size)
    with torch.no_grad():
        expected = np.mean(to_numpy(model.eval()(as_tensor(x))).argmax(1) == y)
    values = [expected, *mistakes.values()]
    assert len(mistakes) == 4 and len(set(values)) == len(values), (expected, mistakes)


# --- the checks accept correct code and refuse the rest ---------------------------------------


def test_correct_implementations_pass_every_check(capsys):
    check_build_mlp(build_mlp)
    check_build_mlp_hidden(build_mlp)
    check_train_step(train_step)
    check_train_step_hidden(train_step)
    check_accuracy(accuracy)
    check_accuracy_hidden(accuracy)
    out = capsys.readouterr()
    assert out.out.count("— correct") == 6
    assert out.err == ""


@pytest.mark.parametrize(
    ("check", "fn", "message"),
    [
        (check_build_mlp, lambda dims, use_bn, rng, init_scale: None, "list of layers"),
        (check_build_mlp, lambda dims, use_bn, rng, init_scale: ["Linear"], "utils.nn"),
        (check_train_step, lambda layers, x, y, lr: None, "None"),
        (check_train_step, lambda layers, x, y, lr: (1.0, 2.0), "shape"),
        (check_accuracy, lambda layers, x, y, batch_size: np.ones(3), "shape"),
        (check_accuracy, lambda layers, x, y, batch_size: "half", "not a numeric"),
    ],
)
def test_malformed_results_fail_with_a_message(check, fn, message):
    with pytest.raises(CheckFailure, match=message):
        check(fn)


def test_torch_inside_train_step_fails_the_check():
    def torch_train_step(layers, x, y, lr):
        torch.tensor(np.array(x))
        return train_step(layers, x, y, lr)

    with pytest.raises(TorchUsedError):
        check_train_step(torch_train_step)


def test_a_failure_names_the_case():
    def train_mode_accuracy(layers, x, y, batch_size=256):
        hits = sum(
            int(np.sum(forward(layers, x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        )
        return hits / len(x)

    with pytest.raises(CheckFailure, match=r"^\[dims=\[6, 8, 4\].*training mode"):
        check_accuracy(train_mode_accuracy)


# --- a network read back is hostile input --------------------------------------------------------


class Described:
    """A layer that describes itself as told (what a hostile kernel could send back)."""

    def __init__(self, description):
        self.description = description

    def describe(self):
        return self.description


LINEAR = {"kind": "Linear", "training": True, "weight": np.ones((3, 2)), "bias": np.zeros(2)}
BATCHNORM = {
    "kind": "BatchNorm1d",
    "training": False,
    "eps": 1e-5,
    "momentum": 0.1,
    **{k: np.ones(2) for k in ("gamma", "beta", "running_mean", "running_var")},
}


def test_a_well_formed_description_is_read_as_float64_copies():
    weight = np.arange(6).reshape(3, 2)
    (read,) = read_network([Described({**LINEAR, "weight": weight})])
    assert read["weight"].dtype == np.float64 and np.array_equal(read["weight"], weight)
    read["weight"][0, 0] = 100
    assert weight[0, 0] == 0
    assert read_network([Described(BATCHNORM)])[0]["eps"] == 1e-5


@pytest.mark.parametrize(
    ("description", "message"),
    [
        (["Linear"], "did not describe"),
        ({**LINEAR, "kind": "Conv2d"}, "a Conv2d"),
        ({**LINEAR, "kind": 3}, "unknown kind"),
        ({**LINEAR, "training": "yes"}, "training flag"),
        ({**LINEAR, "weight": [[1.0, 2.0]]}, "2-D float array"),
        ({**LINEAR, "weight": np.ones(3)}, "2-D float array"),
        ({**LINEAR, "weight": np.array([["a", "b"]])}, "2-D float array"),
        ({**LINEAR, "bias": np.zeros(5)}, "bias of shape"),
        ({**BATCHNORM, "beta": np.ones(3)}, "different lengths"),
        ({**BATCHNORM, "eps": "1e-5"}, "eps that is not a number"),
        ({**BATCHNORM, "momentum": True}, "momentum that is not a number"),
        ({key: v for key, v in BATCHNORM.items() if key != "running_var"}, "running_var"),
    ],
)
def test_a_malformed_description_fails_the_check(description, message):
    with pytest.raises(CheckFailure, match=message):
        read_network([Described(description)])


def test_a_train_step_that_swaps_the_layers_fails_the_check():
    def reshaping_step(layers, x, y, lr):
        loss = train_step(layers, x, y, lr)
        layers[0].weight.data = layers[0].weight.data[:, :1]
        return loss

    with pytest.raises(CheckFailure, match="other layers or other shapes"):
        check_train_step(reshaping_step)


def test_a_network_built_here_describes_the_torch_model():
    model = torch_mlp((4, 3, 2), True, seed=3)
    built = layers_from_torch(model)
    assert [type(layer).__name__ for layer in built] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert np.array_equal(numpy_state(built).parameters, torch_state(model).parameters)
