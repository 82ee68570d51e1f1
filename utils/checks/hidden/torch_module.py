"""Lesson 09's hidden cases and checks (the visible ones: ``utils.checks.torch_module``)."""

from __future__ import annotations

import torch

from utils.cases import LARGE_OFFSET, Case, make_case
from utils.checks.hidden import hidden_twin
from utils.checks.scenario import Scenario
from utils.checks.spatial import ChannelsLastCase, channels_last_view
from utils.checks.torch_module.fold import FoldCase, _fold_one, make_fold_case
from utils.checks.torch_module.function import (
    _backward_one,
    _name_of,
    _only_x_requires_grad,
    check_function_forward,
    require_own_backward,
)
from utils.checks.torch_module.module import (
    _check_scenarios,
    check_module_modes,
    check_module_training,
    compare_registration,
    compare_saved_state,
)
from utils.checks.torch_module.scenario import (
    MODES,
    SWITCHING,
    TRAIN_3,
    make_scenario,
    scenarios,
)
from utils.checks.twins import On, counted
from utils.diagnose import on_cases, report

HIDDEN_SHAPES = ((2, 1), (6, 4), (2, 1, 3, 2), (3, 2, 3), (1, 3, 2, 2), (4, 2, 1, 1))


SPECIAL_SHAPE = (3, 3, 2, 2)


def hidden_cases(seed: int = 9_090) -> list[Case]:
    """Random shapes (N=2, C=1, 3-D, a batch of one image, 1x1 maps), then on SPECIAL_SHAPE:
    far gamma/beta, a large offset, a near-constant channel, a channels-last view, a
    transposed and a strided x, and eps=1e-3."""
    cases = [make_case(s, seed + i, f"random x of shape {s}") for i, s in enumerate(HIDDEN_SHAPES)]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}),
        (f"large mean offset ({LARGE_OFFSET:g})", {"offset": LARGE_OFFSET}),
        ("a near-constant channel (variance ~1e-7)", {"near_constant": True}),
        ("non-contiguous x (a transposed view)", {"layout": "transposed"}),
        ("non-contiguous x (every other entry of a wider tensor)", {"layout": "strided"}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}),
    ]
    k = len(cases)
    for j, (label, options) in enumerate(special):
        cases.append(make_case(SPECIAL_SHAPE, seed + k + j, label, **options))
    last = make_case(SPECIAL_SHAPE, seed + 99, "non-contiguous x (channels_last memory format)")
    cases.append(ChannelsLastCase(**{**vars(last), "x": channels_last_view(last.x)}))
    return cases


check_function_forward_hidden = hidden_twin(
    check_function_forward,
    lambda: counted(hidden_cases(), ", {n} hidden cases, vs F.batch_norm"),
)


def check_function_backward_hidden(fn_cls) -> None:
    require_own_backward(fn_cls)
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _backward_one(fn_cls, case, case.x.size <= 24))
    report(f"{_name_of(fn_cls)}.backward, {len(cases)} hidden cases", err)
    on_cases(cases[:2], lambda case: _only_x_requires_grad(fn_cls, case))


HIDDEN = {
    "training": [
        ("8 training batches, one channel, batches of 2", 911, "2 2 3 2 2 4 2 2", {"channels": 1}),
        (
            "momentum=0.3, eps=1e-3, far gamma/beta",
            912,
            TRAIN_3,
            {"momentum": 0.3, "eps": 1e-3, "far_affine": True},
        ),
        ("momentum=1.0, 1 x 1 maps", 913, TRAIN_3, {"momentum": 1.0, "spatial": (1, 1)}),
        ("momentum=0.0, a batch of one image", 914, "1 3 1", {"momentum": 0.0}),
        (f"large mean offset ({LARGE_OFFSET:g})", 915, TRAIN_3, {"offset": LARGE_OFFSET}),
        ("a near-constant channel", 916, TRAIN_3, {"near_constant": True}),
        ("channels_last input", 917, TRAIN_3, {"layout": "channels_last", "channels": 4}),
    ],
    "modes": [
        ("momentum=0.1, switching modes back and forth", 921, SWITCHING, {"channels": 4}),
        (
            "momentum=0.05, eps=1e-3, far gamma/beta",
            922,
            MODES,
            {"momentum": 0.05, "eps": 1e-3, "far_affine": True},
        ),
        ("eval right after construction", 923, "eval 3 train 2 eval 2", {}),
        ("momentum=None, switching modes", 924, SWITCHING, {"momentum": None}),
        (
            "momentum=None, affine=False, one channel",
            925,
            "3 2 4 eval 2",
            {"momentum": None, "affine": False, "channels": 1},
        ),
        (
            "affine=False, momentum=0.3, large offset",
            926,
            MODES,
            {"affine": False, "momentum": 0.3, "offset": LARGE_OFFSET},
        ),
        (
            "track_running_stats=False, switching modes",
            927,
            SWITCHING.replace(" 1", " 2"),
            {"track_running_stats": False},
        ),
        (
            "affine=False and track_running_stats=False",
            928,
            "3 eval 2",
            {"affine": False, "track_running_stats": False},
        ),
        (
            "momentum=None, track_running_stats=False",
            929,
            "3 2 eval 2",
            {"momentum": None, "track_running_stats": False},
        ),
    ],
    "state": [
        ("load_state_dict twice, training on", 931, "load 3 eval 2 load train 2 eval 2", {}),
        ("load_state_dict with momentum=None", 932, "2 load 3 eval 2", {"momentum": None}),
        ("load_state_dict, affine=False", 933, "load eval 2 train 3", {"affine": False}),
        ("float32 module and input", 934, MODES, {"dtype": torch.float32}),
        (
            "float32, momentum=None, channels_last",
            935,
            "3 2 eval 2",
            {"dtype": torch.float32, "momentum": None, "layout": "channels_last"},
        ),
    ],
}
"""topic -> (label, seed, script, options) of the hidden scenarios; options may also hold the
keyword arguments of make_scenario (channels, spatial, far_affine, offset, ...)."""


OPTION_SETS = (
    {},
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False},
    {"momentum": None, "eps": 1e-3},
)
"""Constructor options whose registered state (parameters, buffers, state_dict) is compared."""


def cuda_scenarios() -> list[Scenario]:
    """The module on CUDA (float64) against nn.BatchNorm2d on the CPU; [] without a GPU."""
    if not torch.cuda.is_available():
        return []
    return [
        make_scenario("on CUDA: training, eval, training", 941, MODES, device="cuda"),
        make_scenario(
            "on CUDA: momentum=None, load_state_dict",
            942,
            "3 load 2 eval 2",
            device="cuda",
            momentum=None,
        ),
    ]


def hidden_fold_cases() -> list[FoldCase]:
    return [
        make_fold_case("Linear 6 -> 3, torch tensors", 961, (3, 6), "torch"),
        make_fold_case("Conv2d 2 -> 5, numpy arrays", 962, (5, 2, 3, 3), "numpy"),
        make_fold_case("Linear 4 -> 4 without bias, numpy", 963, (4, 4), "numpy", bias=False),
        make_fold_case(
            "Conv2d 3 -> 3, 1 x 1 kernel, without bias, torch",
            964,
            (3, 3, 1, 1),
            "torch",
            bias=False,
        ),
        make_fold_case(
            "Linear 4 -> 4, far gamma/beta/running statistics, numpy",
            965,
            (4, 4),
            "numpy",
            far=True,
        ),
        make_fold_case(
            "Conv2d 4 -> 4, far statistics, eps=1e-3, torch",
            966,
            (4, 4, 3, 2),
            "torch",
            far=True,
            eps=1e-3,
        ),
        make_fold_case("Linear 7 -> 1, eps=1e-3, numpy", 967, (1, 7), "numpy", eps=1e-3),
        make_fold_case("Linear 5 -> 5, parameters that require grad", 968, (5, 5), "parameters"),
        make_fold_case(
            "Conv2d 3 -> 2, parameters that require grad, no bias",
            969,
            (2, 3, 3, 3),
            "parameters",
            bias=False,
            far=True,
        ),
    ]


def check_fold_hidden(fold) -> None:
    cases = hidden_fold_cases()
    err = on_cases(cases, lambda case: _fold_one(fold, case))
    report(f"fold_batchnorm: {len(cases)} hidden cases", err)


check_module_training_hidden = hidden_twin(
    check_module_training, lambda: On(scenarios(HIDDEN, "training"), hidden=True)
)
check_module_modes_hidden = hidden_twin(
    check_module_modes, lambda: On(scenarios(HIDDEN, "modes"), hidden=True)
)


def check_module_state_hidden(cls, fn_cls) -> None:
    for options in OPTION_SETS:
        compare_registration(cls, options)
    hidden = scenarios(HIDDEN, "state") + cuda_scenarios()
    for s in hidden:
        compare_saved_state(cls, fn_cls, s)
    _check_scenarios(cls, fn_cls, "state, dtypes and devices", hidden, True)
