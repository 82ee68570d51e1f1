"""utils.guard: PyTorch is caught whatever the spelling; plain numpy runs untouched."""

from __future__ import annotations

import importlib
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.guard import GuardTamperedError, TorchUsedError, Watcher, call_without_torch

X = np.random.default_rng(0).normal(size=(4, 3))
OUTSIDE = torch.ones(3, dtype=torch.float64)  # a tensor made before the guard starts


def aliased_import(x):
    import torch as t

    return t.tensor(x).mean(0).numpy()


def dunder_import(x):
    return __import__("torch").tensor(x).numpy()


def importlib_import(x):
    return importlib.import_module("torch").from_numpy(x).numpy()


def sys_modules(x):
    return sys.modules["torch"].as_tensor(x).numpy()


def tensor_method(x):
    return x + OUTSIDE.sum().item()


def unbound_tensor_method(x):
    return x * torch.Tensor.mean(OUTSIDE).item()


def functional_batch_norm(x):
    return F.batch_norm(torch.tensor(x), None, None, training=True).numpy()


def module_batch_norm(x):
    bn = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    return bn(torch.tensor(x)).detach().numpy()


def numpy_of_a_tensor(x):
    return np.asarray(torch.from_numpy(x.copy()))


def in_a_thread(x):
    result = []
    worker = threading.Thread(target=lambda: result.append(torch.tensor(x).numpy()))
    worker.start()
    worker.join()
    return result[0] if result else x


def returns_a_tensor(x):
    return OUTSIDE


def returns_a_tensor_in_a_cache(x):
    return x, {"x_hat": OUTSIDE}


@pytest.mark.parametrize(
    "func",
    [
        aliased_import,
        dunder_import,
        importlib_import,
        sys_modules,
        tensor_method,
        unbound_tensor_method,
        functional_batch_norm,
        module_batch_norm,
        numpy_of_a_tensor,
        in_a_thread,
        returns_a_tensor,
        returns_a_tensor_in_a_cache,
    ],
)
def test_any_use_of_torch_is_caught(func):
    with pytest.raises(TorchUsedError, match="No points"):
        call_without_torch(func, X)


def test_error_names_the_function_and_the_torch_call():
    with pytest.raises(TorchUsedError) as info:
        call_without_torch(dunder_import, X, name="batchnorm_forward")
    assert "batchnorm_forward" in str(info.value) and "torch.tensor" in str(info.value)


def test_pure_numpy_passes_and_returns_its_result():
    def normalize(x, eps=1e-5):
        return (x - x.mean(0)) / np.sqrt(x.var(0) + eps), {"mean": x.mean(0)}

    out, cache = call_without_torch(normalize, X, eps=1e-3)
    np.testing.assert_allclose(out, (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-3))
    assert set(cache) == {"mean"}


def test_learners_own_exceptions_pass_through():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        call_without_torch(stub, X)


def test_removing_the_profiler_is_caught():
    def remove(x):
        sys.setprofile(None)
        return x

    with pytest.raises(GuardTamperedError):
        call_without_torch(remove, X)


def test_removing_the_profiler_and_putting_it_back_is_caught():
    def sneaky(x):
        saved = sys.getprofile()
        sys.setprofile(None)
        y = torch.tensor(x).numpy()
        sys.setprofile(saved)
        return y

    with pytest.raises(GuardTamperedError):
        call_without_torch(sneaky, X)


def test_replacing_the_profiler_is_caught():
    with pytest.raises(GuardTamperedError):
        call_without_torch(lambda x: sys.setprofile(lambda *a: None) or x, X)


def test_the_previous_profiler_is_restored():
    before_sys, before_threads = sys.getprofile(), threading.getprofile()
    call_without_torch(lambda x: x, X)
    with pytest.raises(TorchUsedError):
        call_without_torch(dunder_import, X)
    assert sys.getprofile() is before_sys
    assert threading.getprofile() is before_threads


def test_nested_guards_do_not_count_as_tampering():
    def outer(x):
        return call_without_torch(lambda y: y * 2, x)

    np.testing.assert_array_equal(call_without_torch(outer, X), X * 2)
    with pytest.raises(TorchUsedError):
        call_without_torch(lambda x: call_without_torch(dunder_import, x), X)


def test_torch_folder_is_found_even_before_torch_is_imported(monkeypatch):
    from utils import guard

    expected = guard._torch_dir()
    monkeypatch.delitem(sys.modules, "torch")
    assert guard._torch_dir() == expected and expected.rstrip("/\\").endswith("torch")


def test_a_watcher_records_the_first_builtin_its_callable_names():
    def abs_or_len(func):
        return f"{func.__name__} called" if func in (abs, len) else None

    with Watcher(lambda frame: None, abs_or_len) as watcher:
        sorted([2, 1])
        abs(-1)
        len([1])
    assert watcher.seen == "abs called" and not watcher.tampered


def test_a_watcher_asks_about_python_calls_in_torch_only():
    def local(x):
        return x

    with Watcher(lambda frame: frame.f_code.co_name, lambda func: None) as watcher:
        local(OUTSIDE)
        F.relu(OUTSIDE)
    assert watcher.seen == "relu"


def test_a_torch_guard_inside_another_watcher_still_guards():
    with Watcher(lambda frame: None, lambda func: None) as outer:
        with pytest.raises(TorchUsedError):
            call_without_torch(dunder_import, X)
        assert sys.getprofile() is outer
    assert outer.tampered  # to the outer watcher, installing the guard replaced its profiler
