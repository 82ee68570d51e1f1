"""Checks for lesson 08_why_batchnorm_works: measurements of scale invariance, of the loss
landscape along the gradient, and of internal covariate shift.

The exercises, as the notebook states them (torch, float64; autograd allowed):

``output_changes(layer, weight, x, alphas) -> (K,)``
    ``||layer(x, a * weight) - layer(x, weight)|| / ||layer(x, weight)||`` (Frobenius norms)
    for every a in alphas; ``weight`` is not modified.
``weight_gradient_norms(layer, weight, x, alphas, upstream) -> (K,)``
    for every a: the Frobenius norm of the gradient of ``sum(layer(x, V) * upstream)`` with
    respect to the weight the layer holds, ``V = a * weight``.
``losses_along_gradient(model, loss_fn, step_sizes) -> (K,)``
    g = the gradient of ``loss_fn()`` over every parameter of ``model``; ``L(w - eta * g)``
    for every eta, each step from the original w; the parameters are restored afterwards.
``gradient_changes(model, loss_fn, step_sizes) -> (K,)``
    ``||grad L(w) - grad L(w - eta * g)||`` over all parameters (one flat vector); restored.
``input_shift(model, layer, x, update) -> (mean_shift, std_shift)``
    the input of ``layer`` when ``model`` runs on the probe batch x, recorded (no grad) before
    and after one call of ``update()``; the mean over units of the absolute change of the
    per-unit batch mean, and of the per-unit (biased) std. No hook is left behind.
``gradient_ics(model, loss_fn, layer, lr) -> (difference, cosine)``
    Santurkar et al.'s covariate shift of ``layer`` (a module of the Sequential ``model`` with
    a ``weight``): G = dL/d(layer.weight); every parameter of the modules *before* layer takes
    the SGD step ``p - lr * dL/dp`` (gradients at the original point); G' = dL/d(layer.weight)
    there. Returns ``||G - G'||`` and ``cos(G, G')``; the parameters are restored.

The expected values are closed forms where the answer is analytic (a layer without
BatchNorm, a quadratic loss, least squares, a deep linear network, an additive update of a
Linear layer) and PyTorch autograd otherwise. Known-wrong variants (stepping along +g,
steps that accumulate, gradients accumulated in ``.grad``, absolute instead of relative
norms, the output of a layer instead of its input, ...) are computed on the same case and
name the mistake.

The learner's function is always called through ``utils.landscape.run_on_case``, which builds
the case from plain data (kind, sizes, seed) beside the learner's code and reports back, as plain
data, what the call returned and left behind (the parameters, the model's mode, hooks, the calls
of ``update()``): in JupyterLab that is this process; in grading the checks run in the grader's
checker and the call in the kernel (``common.run_on_case``). Every verdict is taken here, from
that report and from the same case built again here.

The package holds one module per part: ``common`` (the shared comparison and the call),
``scale_invariance`` (part 1), ``along_gradient`` (part 2: the landscape along the gradient) and
``covariate_shift`` (parts 3a and 3b); this module re-exports them. The hidden cases and checks
are in ``utils.checks.hidden.why``.
"""

from __future__ import annotations

from utils.checks.why.along_gradient import (
    LANDSCAPE_FALLBACK,
    VISIBLE_LANDSCAPE_CASES,
    LandscapeCase,
    _expected,
    _variants,
    along_gradient_reference,
    check_gradient_changes,
    check_losses_along_gradient,
)
from utils.checks.why.common import assert_close_scaled, merge_equal, run_on_case
from utils.checks.why.covariate_shift import (
    FORCED_TRAIN,
    VISIBLE_ICS_CASES,
    VISIBLE_SHIFT_CASES,
    IcsCase,
    ShiftCase,
    check_gradient_ics,
    check_input_shift,
    gradient_ics_reference,
    input_shift_reference,
)
from utils.checks.why.scale_invariance import (
    LAYERS,
    VISIBLE_SCALE_CASES,
    ScaleCase,
    check_output_changes,
    check_weight_gradient_norms,
    output_changes_reference,
    weight_gradient_norms_reference,
)

__all__ = [
    "FORCED_TRAIN",
    "IcsCase",
    "LANDSCAPE_FALLBACK",
    "LAYERS",
    "LandscapeCase",
    "ScaleCase",
    "ShiftCase",
    "VISIBLE_ICS_CASES",
    "VISIBLE_LANDSCAPE_CASES",
    "VISIBLE_SCALE_CASES",
    "VISIBLE_SHIFT_CASES",
    "_expected",
    "_variants",
    "along_gradient_reference",
    "assert_close_scaled",
    "check_gradient_changes",
    "check_gradient_ics",
    "check_input_shift",
    "check_losses_along_gradient",
    "check_output_changes",
    "check_weight_gradient_norms",
    "gradient_ics_reference",
    "input_shift_reference",
    "merge_equal",
    "output_changes_reference",
    "run_on_case",
    "weight_gradient_norms_reference",
]
