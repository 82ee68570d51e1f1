"""Checks for lesson 09: batch normalization written as PyTorch code.

Three exercises are checked here, all in float64 against PyTorch:

* ``BatchNormFunction`` (a ``torch.autograd.Function``): its forward against
  ``F.batch_norm(training=True)``; its hand-written backward against autograd of
  ``F.batch_norm`` and against centered finite differences of the learner's own forward
  (gradcheck's test, every perturbed forward computed in one call). While the learner's
  code runs, a profiler refuses PyTorch's own normalization (any ``*_norm`` kernel of torch,
  whatever the spelling) and the autograd engine, so the gradient has to be written out by
  hand.
* ``BatchNorm2d`` (a ``torch.nn.Module``): stepped side by side with ``torch.nn.BatchNorm2d``
  through scripts of training batches, ``eval()``/``train()`` switches and ``load_state_dict``;
  after every step the output, the gradients of input, weight and bias, the running
  statistics and ``num_batches_tracked`` are compared (values and dtypes). Separate checks
  cover the registered state (parameters, buffers, ``state_dict``), ``.double()``, float32
  and device moves.
* ``fold_batchnorm``: a Linear or Conv2d followed by batch norm in eval mode must equal one
  Linear or Conv2d with the folded weight and bias (``F.linear``/``F.conv2d`` references),
  for numpy and torch inputs alike.

The checks reach the learner's code through ``utils.autograd_call`` (calls that take ndarrays
and return plain data, run in-process in JupyterLab and in the graded kernel when grading, where
these checks run in the trusted checker). The hidden cases and checks are in
``utils.checks.hidden.torch_module``.

The checks live in one module per concern: ``common`` (the calls and the references),
``function``, ``module`` (its checks), ``scenario`` (its scenarios and their visible table),
``adapter`` (how ``utils.checks.scenario``, the scenario engine shared with lesson 04, runs
PyTorch's, the known-wrong and the learner's modules and compares their values) and ``fold``;
this package re-exports what notebooks and tests use, so they import from
``utils.checks.torch_module``.

A failure names the case, the step and, by comparing with known-wrong variants run on the
same input, the likely mistake.
"""

from utils.cases import make_case
from utils.checks.torch_module.adapter import (
    MODULE_MISTAKES,
    Value,
    _agrees,
    module_mistakes,
    trace,
)
from utils.checks.torch_module.common import call_learner, in_kernel, tensor_like_case
from utils.checks.torch_module.fold import (
    _fold_one,
    _layer,
    _wrong_fold,
    check_fold,
    fold_mistakes,
    fold_reference,
    make_fold_case,
    visible_fold_cases,
)
from utils.checks.torch_module.function import (
    _inputs,
    backward_mistakes,
    check_function_backward,
    check_function_forward,
    forward_mistakes,
    reference_gradients,
    require_own_backward,
)
from utils.checks.torch_module.module import (
    check_module_modes,
    check_module_state,
    check_module_training,
    compare_registration,
    compare_saved_state,
    compare_scenario,
)
from utils.checks.torch_module.scenario import VISIBLE, scenarios
from utils.diagnose import CheckFailure

__all__ = [
    "CheckFailure",
    "MODULE_MISTAKES",
    "VISIBLE",
    "Value",
    "_agrees",
    "_fold_one",
    "_inputs",
    "_layer",
    "_wrong_fold",
    "backward_mistakes",
    "call_learner",
    "in_kernel",
    "check_fold",
    "check_function_backward",
    "check_function_forward",
    "check_module_modes",
    "check_module_state",
    "check_module_training",
    "compare_registration",
    "compare_saved_state",
    "compare_scenario",
    "fold_mistakes",
    "fold_reference",
    "forward_mistakes",
    "make_case",
    "make_fold_case",
    "module_mistakes",
    "reference_gradients",
    "require_own_backward",
    "scenarios",
    "tensor_like_case",
    "trace",
    "visible_fold_cases",
]
