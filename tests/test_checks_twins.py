"""Check pairs from one definition (``utils.checks.twins``, ``utils.checks.hidden.hidden_twin``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import utils.checks.hidden as hidden_package
from utils.checks.hidden import hidden_twin
from utils.checks.twins import On, counted, paired, twin

HAND_WRITTEN = {
    "activations.check_init_weights_hidden": "also checks that layers are drawn independently",
    "batchnorm.check_batchnorm_forward_hidden": "no call that leaves eps at its default",
    "gradients.check_relative_error_hidden": "a shape mismatch must raise, not the zeros case",
    "gradients.check_numerical_gradient_hidden": "also checks that h is used",
    "normalization_variants.check_groupnorm_rejects_uneven_groups_hidden": "several splits",
    "spatial.check_spatial_forward_hidden": "no call that leaves eps at its default",
    "spatial.check_spatial_forward_direct_hidden": "check_spatial_forward_hidden, refused names",
    "torch_module.check_function_backward_hidden": "differences on small cases, requires_grad",
    "torch_module.check_fold_hidden": "no call that leaves eps at its default",
    "torch_module.check_module_state_hidden": "registration under several options, CUDA",
    "triton_kernels.check_channel_statistics_hidden": "adds a float32 case",
    "triton_kernels.check_function_forward_hidden": "adds a channels-last case, no float32",
    "triton_kernels.check_function_backward_hidden": "other cases per part, no gradcheck",
}
"""Hidden checks whose code differs from their visible check's (not only cases and label)."""


def _hidden_checks() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(hidden_package.__path__):
        module = importlib.import_module(f"{hidden_package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if name.startswith("check_") and name.endswith("_hidden") and callable(value):
                if getattr(value, "__module__", None) == module.__name__:
                    found[f"{info.name}.{name}"] = value
    return found


def _visible_of(key: str, check) -> object:
    family, name = key.split(".")
    visible = name.removesuffix("_hidden")
    module = importlib.import_module(f"utils.checks.{family}")
    return getattr(module, visible)


def test_every_hidden_check_is_a_twin_or_on_the_short_list():
    checks = _hidden_checks()
    assert len(checks) > 50
    twins = {k: c for k, c in checks.items() if hasattr(c, "twin_of")}
    assert set(checks) - set(twins) == set(HAND_WRITTEN)
    assert not set(twins) & set(HAND_WRITTEN)
    for key, check in twins.items():
        visible = _visible_of(key, check)
        assert check.twin_of is visible, key
        assert check.body is visible.body, key
        assert check.__name__ == check.__qualname__ == key.split(".")[1]


def test_every_hidden_check_takes_what_its_visible_check_takes():
    for key, check in _hidden_checks().items():
        visible = _visible_of(key, check)
        assert list(inspect.signature(check).parameters) == list(
            inspect.signature(visible).parameters
        ), key


# --- the mechanism ---------------------------------------------------------------------------


def _made(calls: list):
    def visible_cases():
        calls.append("visible")
        return On([1, 2], " (visible)")

    @paired(visible_cases)
    def check_sum(on: On, fn, scale=1) -> None:
        """Visible check of ``sum``."""
        got = fn(on.cases) * scale
        print(f"sum{on.label}: {got}, hidden={on.hidden}")

    return check_sum


def test_paired_runs_the_body_on_the_visible_cases_built_at_each_call(capsys):
    calls = []
    check_sum = _made(calls)
    assert calls == []
    check_sum(sum)
    check_sum(sum, 10)
    assert calls == ["visible", "visible"]
    assert capsys.readouterr().out == (
        "sum (visible): 3, hidden=False\nsum (visible): 30, hidden=False\n"
    )
    assert check_sum.__name__ == check_sum.__qualname__ == "check_sum"
    assert check_sum.__doc__ == "Visible check of ``sum``."
    assert check_sum.__module__ == __name__
    assert str(inspect.signature(check_sum)) == "(fn, scale=1) -> 'None'"


def test_a_hidden_twin_runs_the_same_body_on_its_own_cases(capsys):
    calls = []
    check_sum = _made(calls)
    check_sum_hidden = hidden_twin(
        check_sum, lambda: counted((4, 5, 6), " on {n} hidden cases", hidden=True)
    )
    check_sum_hidden(sum)
    assert calls == []  # the visible cases are never built for the twin
    assert capsys.readouterr().out == "sum on 3 hidden cases: 15, hidden=True\n"
    assert check_sum_hidden.__name__ == check_sum_hidden.__qualname__ == "check_sum_hidden"
    assert check_sum_hidden.__module__ == __name__  # where its cases were declared
    assert "``check_sum``" in check_sum_hidden.__doc__
    assert check_sum_hidden.twin_of is check_sum and check_sum_hidden.body is check_sum.body
    assert inspect.signature(check_sum_hidden) == inspect.signature(check_sum)


def test_a_twin_passes_failures_and_arguments_through():
    check_sum = _made([])
    with pytest.raises(TypeError):
        check_sum()  # the body's own TypeError: fn is missing
    with pytest.raises(ZeroDivisionError):
        twin(check_sum, lambda: On([1]), "_other", "doc")(lambda cases: 1 / 0)


def test_only_a_paired_check_has_twins():
    def check_plain(fn) -> None:
        fn()

    with pytest.raises(TypeError, match="not made by @paired"):
        hidden_twin(check_plain, lambda: On([]))


def test_counted_fills_in_the_number_of_cases():
    assert counted(iter("abc"), "x on {n} cases") == On(["a", "b", "c"], "x on 3 cases")
