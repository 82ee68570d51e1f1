"""utils.checks.torch_module: the watcher, the references, the known-wrong variants and the
lesson-09 checks.

The correct implementations here are written independently of the module and of the
notebook; PyTorch is the oracle (plain formulas check the references themselves).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from utils import reference
from utils.checks import torch_module as tm
from utils.checks.hidden import torch_module as hidden
from utils.checks.scenario import partial_trace
from utils.checks.torch_module.adapter import LESSON
from utils.diagnose import CheckFailure
from utils.gradcheck import relative_error


class GoodFunction(torch.autograd.Function):
    """Batch norm over every axis but 1, statistics from torch.var_mean."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        dims = tuple(d for d in range(x.dim()) if d != 1)
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        rstd = (var + eps).rsqrt()
        view = [1, -1] + [1] * (x.dim() - 2)
        xh = (x - mean) * rstd
        ctx.save_for_backward(xh, rstd, gamma)
        return xh * gamma.view(view) + beta.view(view)

    @staticmethod
    def backward(ctx, dy):
        xh, rstd, gamma = ctx.saved_tensors
        dims = tuple(d for d in range(dy.dim()) if d != 1)
        view = [1, -1] + [1] * (dy.dim() - 2)
        g = dy * gamma.view(view)
        dx = rstd * (g - g.mean(dims, keepdim=True) - xh * (g * xh).mean(dims, keepdim=True))
        return dx, (dy * xh).sum(dims), dy.sum(dims), None


class GoodModule(torch.nn.BatchNorm2d):
    """nn.BatchNorm2d's state and bookkeeping, normalizing through GoodFunction."""

    def forward(self, x):
        c = x.shape[1]
        w = self.weight if self.affine else x.new_ones(c)
        b = self.bias if self.affine else x.new_zeros(c)
        if not self.training and self.track_running_stats:
            s = w / (self.running_var + self.eps).sqrt()
            return x * s.view(1, -1, 1, 1) + (b - self.running_mean * s).view(1, -1, 1, 1)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=1)
                self.num_batches_tracked += 1
                f = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, f)
                self.running_var.lerp_(var, f)
        return GoodFunction.apply(x, w, b, self.eps)


def good_fold(weight, bias, running_mean, running_var, gamma, beta, eps=1e-5):
    lib = torch if isinstance(weight, torch.Tensor) else np
    a = gamma / lib.sqrt(running_var + eps)
    b = running_mean * 0 if bias is None else bias
    return weight * a.reshape((-1,) + (1,) * (weight.ndim - 1)), beta + (b - running_mean) * a


# --- the watcher ---------------------------------------------------------------------------------

_batch_norm_alias = F.batch_norm  # bound before any check runs, as a learner could


@pytest.mark.parametrize(
    "cheat",
    [
        lambda x: _batch_norm_alias(x, None, None, training=True),
        lambda x: torch.batch_norm(x, None, None, None, None, True, 0.0, 1e-5, False),
        lambda x: torch.native_batch_norm(x, None, None, None, None, True, 0.0, 1e-5)[0],
        lambda x: torch.ops.aten.native_batch_norm.default(
            x, None, None, None, None, True, 0.0, 1e-5
        )[0],
        lambda x: torch.nn.BatchNorm1d(3, dtype=x.dtype)(x),
        lambda x: F.layer_norm(x.T, (4,)).T,
        lambda x: F.group_norm(x[None].transpose(1, 2), 3).transpose(1, 2)[0],
    ],
    ids=["alias", "torch.batch_norm", "native", "aten op", "module", "layer_norm", "group_norm"],
)
def test_the_watcher_refuses_every_spelling_of_pytorchs_normalization(cheat):
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(CheckFailure, match="PyTorch's own normalization"):
        tm.call_learner("cheat", cheat, x)


@pytest.mark.parametrize(
    "autograd",
    [
        lambda x: torch.autograd.grad((x**2).sum(), x),
        lambda x: (x**2).sum().backward(),
        lambda x: torch.func.grad(lambda t: (t**2).sum())(x),
    ],
    ids=["autograd.grad", ".backward()", "torch.func.grad"],
)
def test_the_watcher_refuses_autograd(autograd):
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(CheckFailure, match="runs autograd"):
        tm.call_learner("backward", autograd, x)


def test_the_watcher_allows_ordinary_tensor_code_and_restores_the_profiler():
    before = sys.getprofile()
    x = torch.randn(5, 2, dtype=torch.float64)
    var, mean = tm.call_learner("stats", torch.var_mean, x, dim=0, correction=0)
    assert torch.allclose(mean, x.mean(0))
    assert sys.getprofile() is before
    with pytest.raises(CheckFailure, match="raised ZeroDivisionError"):
        tm.call_learner("divide", lambda: 1 / 0)
    assert sys.getprofile() is before


def test_removing_the_profiler_is_reported():
    with pytest.raises(CheckFailure, match="changed the profiler"):
        tm.call_learner("sneaky", sys.setprofile, None)


# --- references and layouts ----------------------------------------------------------------------

shapes = st.sampled_from([(3, 2), (2, 3, 2, 2), (4, 1, 3), (3, 4, 2, 3)])


@given(
    shape=shapes, seed=st.integers(0, 2**16), layout=st.sampled_from(["C", "transposed", "strided"])
)
def test_tensor_like_case_keeps_values_and_non_contiguity(shape, seed, layout):
    case = tm.make_case(shape, seed, "x", layout=layout)
    t = tm.tensor_like_case(case.x)
    assert np.array_equal(t.numpy(), case.x)
    assert t.is_contiguous() == (layout == "C")


def test_channels_last_cases_become_channels_last_tensors():
    (case,) = [c for c in hidden.hidden_cases() if "channels_last" in c.label]
    t = tm.tensor_like_case(case.x)
    assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_forward_reference_normalizes_each_channel_with_the_biased_variance(shape, seed):
    case = tm.make_case(shape, seed, "x")
    moved = np.moveaxis(case.x, 1, -1).reshape(-1, shape[1])
    expected = case.gamma * (moved - moved.mean(0)) / np.sqrt(moved.var(0) + case.eps) + case.beta
    got = np.moveaxis(
        reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps), 1, -1
    )
    assert relative_error(got.reshape(-1, shape[1]), expected) < 1e-12


def test_known_wrong_function_outputs_all_differ_from_the_reference():
    (case,) = [c for c in hidden.hidden_cases() if c.label.startswith("eps=1e-3")]  # 4-D
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    for description, wrong in tm.forward_mistakes(case).items():
        assert relative_error(wrong, expected) > 1e-6, description
    grads = tm.reference_gradients(case)
    wrong = tm.backward_mistakes(case)
    for key, variants in wrong.items():
        for description, value in variants.items():
            assert relative_error(value, grads[key]) > 1e-6, description


@pytest.mark.parametrize("mistake", list(tm.MODULE_MISTAKES))
def test_each_known_wrong_module_differs_from_pytorch_somewhere(mistake):
    def differs(s):
        ref = list(tm.trace(torch.nn.BatchNorm2d, s))
        wrong = partial_trace(LESSON.known_wrong(mistake), s)
        return len(wrong) < len(ref) or any(
            not tm._agrees(wrong[i].get(k), v)
            for i, snap in enumerate(ref)
            for k, v in snap.items()
            if isinstance(v, tm.Value)
        )

    all_scenarios = [s for topic in hidden.HIDDEN for s in tm.scenarios(hidden.HIDDEN, topic)]
    assert any(differs(s) for s in all_scenarios)


def test_a_known_wrong_module_without_a_mistake_is_pytorch():
    s = tm.scenarios(hidden.HIDDEN, "modes")[0]
    ref = list(tm.trace(torch.nn.BatchNorm2d, s))
    same = partial_trace(LESSON.known_wrong("no mistake"), s)
    for a, b in zip(ref, same, strict=True):
        for key, value in a.items():
            if isinstance(value, tm.Value):
                assert tm._agrees(b[key], value), key


@pytest.mark.parametrize(
    "case", tm.visible_fold_cases() + hidden.hidden_fold_cases(), ids=lambda c: c.label
)
def test_fold_reference_and_known_wrong_folds(case):
    w, b = good_fold(
        *(
            None if a is None else np.array(a)
            for a in (
                case.weight,
                case.bias,
                case.running_mean,
                case.running_var,
                case.gamma,
                case.beta,
            )
        ),
        case.eps,
    )
    x = torch.tensor(case.x)
    folded = tm._layer(torch.tensor(w), torch.tensor(b), x).numpy()
    assert relative_error(folded, tm.fold_reference(case)) < 1e-12
    assert tm._wrong_fold(case, "no mistake") is not None
    for description, wrong in tm.fold_mistakes(case).items():
        assert relative_error(wrong, folded) > 1e-6, description


# --- the checks on correct and wrong code --------------------------------------------------------


def test_independent_correct_code_passes_every_check(capsys):
    tm.check_function_forward(GoodFunction)
    hidden.check_function_forward_hidden(GoodFunction)
    tm.check_function_backward(GoodFunction)
    hidden.check_function_backward_hidden(GoodFunction)
    for check in ("training", "modes", "state"):
        getattr(tm, f"check_module_{check}")(GoodModule, GoodFunction)
        getattr(hidden, f"check_module_{check}_hidden")(GoodModule, GoodFunction)
    tm.check_fold(good_fold)
    hidden.check_fold_hidden(good_fold)
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.count("— correct") == 13


def test_a_module_without_the_function_in_its_graph_fails():
    class Plain(GoodModule):
        def forward(self, x):
            torch.nn.BatchNorm2d.forward  # noqa: B018 - present, never called
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
            return (x - mean) / (var + self.eps).sqrt()

    with pytest.raises(CheckFailure, match="normalize through your GoodFunction"):
        tm.check_module_training(Plain, GoodFunction)


def test_running_statistics_as_parameters_are_named():
    class AsParameters(GoodModule):
        def __init__(self, c, **options):
            super().__init__(c, **options)
            del self.running_mean
            self.running_mean = torch.nn.Parameter(torch.zeros(c), requires_grad=False)

    with pytest.raises(CheckFailure, match="running_mean is an nn.Parameter"):
        tm.compare_registration(AsParameters, {})


def test_state_loaded_into_pytorch_must_match():
    class SavesTheStd(GoodModule):
        def state_dict(self, *args, **kwargs):
            state = super().state_dict(*args, **kwargs)
            state["running_var"] = state["running_var"].sqrt()
            return state

    with pytest.raises(CheckFailure, match="after loading your state_dict into nn.BatchNorm2d"):
        tm.check_module_state(SavesTheStd, GoodFunction)

    class ForgetsCounter(GoodModule):
        def state_dict(self, *args, **kwargs):
            state = super().state_dict(*args, **kwargs)
            state.pop("num_batches_tracked")
            return state

    with pytest.raises(CheckFailure, match="state_dict\\(\\) lacks 'num_batches_tracked'"):
        tm.check_module_state(ForgetsCounter, GoodFunction)


# --- CUDA ----------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_function_on_cuda_matches_the_cpu_float64_results():
    case = hidden.hidden_cases()[2]
    cpu = [t.detach().requires_grad_() for t in tm._inputs(case)]
    gpu = [t.detach().cuda().requires_grad_() for t in cpu]
    dy = torch.tensor(case.dout)
    y_cpu = GoodFunction.apply(*cpu, case.eps)
    y_gpu = GoodFunction.apply(*gpu, case.eps)
    y_cpu.backward(dy)
    y_gpu.backward(dy.cuda())
    assert relative_error(y_gpu.detach().cpu().numpy(), y_cpu.detach().numpy()) < 1e-12
    for a, b in zip(gpu, cpu, strict=True):
        assert relative_error(a.grad.cpu().numpy(), b.grad.numpy()) < 1e-12


@pytest.mark.gpu
@cuda
def test_module_moved_to_cuda_steps_like_pytorch_on_the_cpu():
    scenarios = hidden.cuda_scenarios()
    assert scenarios and all(s.device == "cuda" for s in scenarios)
    for s in scenarios:
        tm.compare_scenario(GoodModule, GoodFunction, s)
        tm.compare_saved_state(GoodModule, GoodFunction, s)
    module = GoodModule(3).to("cuda")
    assert all(t.is_cuda for t in module.state_dict().values())
