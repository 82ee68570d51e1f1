"""utils.checks.triton_kernels: cases, the NaN guard band, the finite differences, the known-wrong
variants and the watch on the learner's torch calls. (The checks against planted kernels are in
tests/test_lesson_11_fused_batchnorm_kernel.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import autograd_call, reference
from utils.autograd_call import LearnerFailure
from utils.checks import triton_kernels as tk
from utils.checks.hidden.triton_kernels import hidden_cases
from utils.diagnose import MATCH, CheckFailure
from utils.gradcheck import relative_error


def test_interpreter_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tk.interpreted() and tk.kernel_device() == torch.device("cpu")
    assert tk.interpreted is autograd_call.interpreted  # one definition, kernel-side
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not tk.interpreted()
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not tk.interpreted()


def test_guarded_tensor_is_contiguous_and_surrounded_by_nan():
    a = np.arange(24.0).reshape(2, 3, 4)
    t = autograd_call.guarded(a)
    assert t.is_contiguous() and np.array_equal(t.cpu().numpy(), a)
    storage = torch.as_tensor(t.untyped_storage(), dtype=torch.uint8)  # the whole buffer
    whole = storage.view(torch.float64)
    start = t.storage_offset()
    assert torch.isnan(whole[:start]).all() and torch.isnan(whole[start + a.size :]).all()
    assert start >= a.size and whole.numel() - start - a.size >= a.size


def test_cases_cover_the_edges_the_lesson_promises():
    cases = tk.visible_cases() + hidden_cases()
    shapes = [c.x.shape for c in cases]
    per_channel = [c.x.size // c.x.shape[1] for c in cases]
    assert any(s[0] == 2 for s in shapes) and any(s[1] == 1 for s in shapes)
    assert any(len(s) == 2 for s in shapes)
    assert any(m > c.block for m, c in zip(per_channel, cases, strict=True))  # the loop runs
    assert any(m % c.block for m, c in zip(per_channel, cases, strict=True))  # a partial block
    assert any(m < c.block for m, c in zip(per_channel, cases, strict=True))
    for c in [*cases, tk.float32_case()]:
        assert not np.any(c.gamma == 1) and not np.any(c.beta == 0)
        assert c.block & (c.block - 1) == 0  # a power of two, as tl.arange needs


def test_hidden_cases_are_seeded():
    a, b = hidden_cases(), hidden_cases()
    assert all(np.array_equal(x.x, y.x) for x, y in zip(a, b, strict=True))


def test_float32_case_holds_float32_values_with_a_large_mean():
    c = tk.float32_case()
    assert c.dtype == torch.float32
    assert np.array_equal(c.x, c.x.astype(np.float32).astype(np.float64))
    assert abs(c.x.mean()) > 100 * c.x.std()


@pytest.mark.parametrize("key, index", [("dx", 0), ("sum_dy_xhat", 1), ("sum_dy", 2)])
def test_vectorized_differences_match_autograd(key, index):
    case = tk.visible_cases()[0]
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dy, case.eps
    )[index]
    assert relative_error(tk._difference(key, case), expected) < 1e-7


def _right_and_wrong(case) -> dict[str, tuple[np.ndarray, dict]]:
    """name -> (the right array, its known-wrong variants) on ``case``."""
    mean, inv_std = tk._statistics_reference(case)
    grads = tk._gradients(case)
    stats, sums = tk.statistics_mistakes(case), tk.reduction_mistakes(case, mean, inv_std)
    y = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    return {
        "mean": (mean, stats["mean"]),
        "inv_std": (inv_std, stats["inv_std"]),
        "y": (y, tk.normalize_mistakes(case, mean, inv_std)),
        "sum_dy": (grads["sum_dy"], sums["sum_dy"]),
        "sum_dy_xhat": (grads["sum_dy_xhat"], sums["sum_dy_xhat"]),
        "dx": (
            grads["dx"],
            tk.elementwise_mistakes(case, mean, inv_std, grads["sum_dy"], grads["sum_dy_xhat"]),
        ),
    }


@pytest.mark.parametrize("name", ["mean", "inv_std", "y", "sum_dy", "sum_dy_xhat", "dx"])
def test_every_known_wrong_variant_differs_from_the_right_answer(name):
    right, wrong = _right_and_wrong(tk.visible_cases()[0])[name]
    for description, value in wrong.items():
        assert relative_error(value, right) > MATCH, description


def test_masked_lanes_variant_is_what_an_unmasked_second_pass_computes():
    case = tk.visible_cases()[0]  # M = 40, block 16: 8 masked lanes in the last block
    rows = tk._channels(case.x)
    mean = rows.mean(1, keepdims=True)
    padded = np.concatenate([rows, np.zeros((rows.shape[0], 8))], axis=1)
    var = ((padded - mean) ** 2).sum(1) / rows.shape[1]
    wrong = tk.statistics_mistakes(case)["inv_std"]
    key = next(k for k in wrong if "masked lanes" in k)
    assert relative_error(wrong[key], 1 / np.sqrt(var + case.eps)) < 1e-14


def test_the_kernel_side_watch_refuses_torch_reductions_and_normalization():
    x = torch.randn(4, 3)
    watched = autograd_call.kernels_watched
    with pytest.raises(LearnerFailure, match="calls torch's sum"):
        watched("f", lambda t: t.sum(0), x)
    with pytest.raises(LearnerFailure, match="calls torch's batch_norm"):
        watched("f", lambda t: torch.nn.functional.batch_norm(t, None, None, training=True), x)
    assert torch.equal(watched("f", lambda t: t * 2 + 1, x), x * 2 + 1)


def test_the_kernel_side_watch_names_an_unfilled_exercise():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(LearnerFailure, match="is the exercise filled in"):
        autograd_call.kernels_watched("channel_statistics", stub, torch.zeros(1))


def test_a_launch_answers_plain_data_and_says_which_input_was_written():
    def launcher(x, mean, eps, block):
        x[0, 0] = 5.0  # writes its input
        return x.sum_to_size(1, x.shape[1]).reshape(-1) * 0 + eps, torch.ones(2)

    x = np.arange(6.0).reshape(3, 2)
    answer = autograd_call.kernels_launch(
        launcher, "launcher", [x, np.zeros(2), 1e-5], "torch.float64", 16
    )
    assert answer["changed"] == [0]
    assert answer["out"]["kind"] == "tuple" and len(answer["out"]["items"]) == 2
    first = answer["out"]["items"][0]
    assert type(first["data"]) is np.ndarray and first["dtype"] == "torch.float64"
    assert x[0, 0] == 0.0  # the caller's array is never the kernel's tensor
    with pytest.raises(ValueError, match="ndarray or a number"):
        autograd_call.kernels_launch(launcher, "launcher", [object()], "torch.float64", 16)


def _described(t):
    return autograd_call.describe(t)


def test_nan_in_a_result_is_reported_as_a_read_past_the_end():
    with pytest.raises(CheckFailure, match="read past the end"):
        tk._as_array(
            "y",
            _described(torch.tensor([1.0, float("nan")], dtype=torch.float64)),
            (2,),
            (torch.float64,),
        )


def test_results_must_be_tensors_of_the_right_shape_and_dtype():
    with pytest.raises(CheckFailure, match="None"):
        tk._as_array("mean", _described(None), (3,), (torch.float64,))
    with pytest.raises(CheckFailure, match="shape"):
        tk._as_array(
            "mean", _described(torch.zeros(4, dtype=torch.float64)), (3,), (torch.float64,)
        )
    with pytest.raises(CheckFailure, match="dtype"):
        tk._as_array("mean", _described(torch.zeros(3)), (3,), (torch.float64,))
    with pytest.raises(CheckFailure, match="expected a tensor"):
        tk._as_array("mean", {"kind": "tensor", "data": "forged"}, (3,), (torch.float64,))
