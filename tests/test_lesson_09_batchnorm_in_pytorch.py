"""Lesson 09: the notebook's own grade cells (hidden tests included) against planted bugs.

Each classic mistake in BatchNormFunction, BatchNorm2d or fold_batchnorm must lose the points
of the grade cell that covers it, with a message naming the mistake; independently written
correct implementations must keep every point; a Function that calls PyTorch's batch norm, or
that leaves its backward to autograd, must lose its points.
"""

from __future__ import annotations

import pytest

from tests.harness import Template, planted, solution_tests

pytestmark = pytest.mark.slow

FORWARD = "test_function_forward"
BACKWARD = "test_function_backward"
TRAINING = "test_module_training"
MODES = "test_module_modes"
STATE = "test_module_state"
FOLD = "test_fold"
POINTS = {FORWARD: 2, BACKWARD: 3, TRAINING: 3, MODES: 3, STATE: 2, FOLD: 3}


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    POINTS, written={"written_folding": 2}
)


def test_the_demos_agree_with_pytorch(nb):
    ns = nb.namespace
    assert ns["gap"] < 1e-5  # the module's state_dict loaded into nn.BatchNorm2d
    assert ns["timings"]["cpu", "nn.BatchNorm2d"] > 0
    assert ns["fold_times"]["folded Conv2d"] > 0


# --- BatchNormFunction -------------------------------------------------------------------------

_FUNCTION_SOURCE = """
class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        axes = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        m = x.numel() // x.shape[1]
        mean = x.mean(dim=axes, keepdim=True)
        var = {var}
        inv_std = {inv_std}
        x_hat = (x - mean) * inv_std
        ctx.save_for_backward(x_hat, inv_std, gamma)
        return {output}

    {backward_decorator}
    def {backward_name}(ctx, dy):
        x_hat, inv_std, gamma = ctx.saved_tensors
        axes = [0, *range(2, dy.dim())]
        shape = [1, -1] + [1] * (dy.dim() - 2)
        m = {backward_count}
        dxh = {dx_hat}
        var_term = x_hat * (dxh * x_hat).sum(dim=axes, keepdim=True)
        dx = inv_std / m * (m * dxh - {mean_term} - var_term)
        return {grads}
"""
GOOD_FUNCTION = dict(
    var="((x - mean) ** 2).sum(dim=axes, keepdim=True) / m",
    inv_std="1 / torch.sqrt(var + eps)",
    output="gamma.reshape(shape) * x_hat + beta.reshape(shape)",
    backward_decorator="@staticmethod",
    backward_name="backward",
    backward_count="dy.numel() // dy.shape[1]",
    dx_hat="dy * gamma.reshape(shape)",
    mean_term="dxh.sum(dim=axes, keepdim=True)",
    grads="dx, (dy * x_hat).sum(dim=axes), dy.sum(dim=axes), None",
)
FUNCTION_TEMPLATE = Template(_FUNCTION_SOURCE, GOOD_FUNCTION)


def planted_function(**bug) -> str:
    """The Function with ``bug`` and the helper a bug may call; the notebook's module cell is
    re-run after it (by the harness's ``with_module``) so that the module uses this Function."""
    return planted(FUNCTION_TEMPLATE, **bug) + AUTOGRAD_GRADS


def with_module(nb, function_code: str) -> str:
    """``function_code`` followed by the notebook's BatchNorm2d cell, as in a learner's
    notebook where the module calls the Function defined above it."""
    return function_code + "\n" + nb.cell_source("batchnorm2d_module")


AUTOGRAD_GRADS = """

def _by_autograd(x_hat, gamma, dy, shape):
    with torch.enable_grad():
        g = gamma.detach().requires_grad_()
        b = torch.zeros_like(g, requires_grad=True)
        y = x_hat * g.reshape(shape) + b.reshape(shape)
        return torch.autograd.grad(y, (g, b), dy)
"""

FUNCTION_BUGS = [
    ({"var": "((x - mean) ** 2).sum(dim=axes, keepdim=True) / (m - 1)"}, [FORWARD], "unbiased"),
    ({"inv_std": "1 / (torch.sqrt(var) + eps)"}, [FORWARD], "outside the square root"),
    ({"inv_std": "1 / torch.sqrt(var + 1e-5)"}, [FORWARD], "eps is fixed at 1e-5"),
    (
        {"output": "beta.reshape(shape) * x_hat + gamma.reshape(shape)"},
        [FORWARD],
        "gamma and beta are swapped",
    ),
    ({"inv_std": "torch.sqrt(var + eps)"}, [FORWARD], "multiplied by the standard deviation"),
    (
        {"output": "F.batch_norm(x, None, None, gamma, beta, True, 0.0, eps)"},
        [FORWARD, BACKWARD],
        "PyTorch's own normalization",
    ),
    (
        {"output": "torch.nn.functional.instance_norm(x.transpose(0, 1)).transpose(0, 1)"},
        [FORWARD],
        "PyTorch's own normalization",
    ),
    ({"mean_term": "0"}, [BACKWARD], "missing the mean term"),
    ({"dx_hat": "dy"}, [BACKWARD], "dx forgets gamma"),
    ({"backward_count": "dy.numel() // dy.shape[1] - 1"}, [BACKWARD], "M - 1 where the closed"),
    ({"mean_term": "dy.sum(dim=axes, keepdim=True)"}, [BACKWARD], "sums dy without gamma"),
    ({"mean_term": "-dxh.sum(dim=axes, keepdim=True)"}, [BACKWARD], "has a flipped sign"),
    (
        {"grads": "dx, dy.sum(dim=axes), (dy * x_hat).sum(dim=axes), None"},
        [BACKWARD],
        "swapped",
    ),
    ({"grads": "dx, (dy * x_hat).sum(dim=0), dy.sum(dim=0), None"}, [BACKWARD], "every axis"),
    ({"grads": "dx, (dy * x_hat).sum(dim=axes), dy.sum(dim=axes)"}, [BACKWARD], "4 values"),
    ({"grads": "dx, (dy * x_hat).sum(dim=axes), dy.sum(dim=axes), 0.0"}, [BACKWARD], "eps"),
    (
        {"grads": "dx, *_by_autograd(x_hat, gamma, dy, shape), None"},
        [BACKWARD],
        "runs autograd",
    ),
    ({"backward_name": "not_backward"}, [BACKWARD], "does not define backward"),
]


@pytest.mark.parametrize(
    "bug, cells, hint", FUNCTION_BUGS, ids=[hint for _, _, hint in FUNCTION_BUGS]
)
def test_function_bugs_lose_their_points_and_are_named(nb, bug, cells, hint):
    nb.assert_loses_points(cells, with_module(nb, planted_function(**bug)), hint)


def test_function_template_with_no_bug_keeps_full_points(nb):
    nb.assert_keeps_points(list(POINTS), with_module(nb, planted_function()))


def test_a_function_relying_on_autograd_of_its_forward_loses_the_backward_points(nb):
    # apply overridden: plain differentiable operations, no hand-written node in the graph
    code = (
        planted_function()
        + """
def _plain(x, gamma, beta, eps=1e-5):
    axes = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    var, mean = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
    return gamma.reshape(shape) * (x - mean) / torch.sqrt(var + eps) + beta.reshape(shape)

BatchNormFunction.apply = staticmethod(_plain)
"""
    )
    nb.assert_loses_points([BACKWARD], code, "was not made by BatchNormFunction")


INDEPENDENT_FUNCTION = """
class BatchNormFunction(torch.autograd.Function):
    '''Works on a (C, M) matrix view: one row per channel.'''

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        rows = x.transpose(0, 1).reshape(x.shape[1], -1)
        centered = rows - rows.mean(1, keepdim=True)
        s = (centered.pow(2).mean(1, keepdim=True) + eps).pow(-0.5)
        ctx.save_for_backward(centered * s, s, gamma)
        ctx.layout = x.transpose(0, 1).shape
        out_rows = centered * s * gamma[:, None] + beta[:, None]
        return out_rows.reshape(ctx.layout).transpose(0, 1)

    @staticmethod
    def backward(ctx, dy):
        xh, s, gamma = ctx.saved_tensors
        g = dy.transpose(0, 1).reshape(xh.shape)
        dxh = g * gamma[:, None]
        dx = s * (dxh - dxh.mean(1, keepdim=True) - xh * (dxh * xh).mean(1, keepdim=True))
        dx = dx.reshape(ctx.layout).transpose(0, 1)
        return dx, (g * xh).sum(1), g.sum(1), None
"""


def test_independent_function_keeps_full_points(nb):
    nb.assert_keeps_points(list(POINTS), with_module(nb, INDEPENDENT_FUNCTION))


# --- BatchNorm2d ---------------------------------------------------------------------------------

_MODULE_SOURCE = """
class BatchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            {register_mean}
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0))
        else:
            {no_buffers}

    def forward(self, x):
        c = x.shape[1]
        shape = (1, c, 1, 1)
        w = self.weight if self.affine else torch.ones(c, dtype=x.dtype, device=x.device)
        b = self.bias if self.affine else torch.zeros(c, dtype=x.dtype, device=x.device)
        if {uses_batch}:
            if self.training and self.track_running_stats:
                with {grad_context}:
                    m = x.numel() // c
                    mean = x.mean(dim=(0, 2, 3))
                    var = ((x - mean.reshape(shape)) ** 2).sum(dim=(0, 2, 3)) / {var_count}
                    self.num_batches_tracked += {increment}
                    n = self.num_batches_tracked.item()
                    f = {weight}
                    {update_mean}
                    self.running_var = (1 - f) * self.running_var + f * var
            return {normalize}
        s = (self.running_var + self.eps).rsqrt().reshape(shape)
        return (x - self.running_mean.reshape(shape)) * s * w.reshape(shape) + b.reshape(shape)
"""
GOOD_MODULE = dict(
    register_mean='self.register_buffer("running_mean", torch.zeros(num_features))',
    no_buffers="self.running_mean = self.running_var = self.num_batches_tracked = None",
    uses_batch="self.training or not self.track_running_stats",
    grad_context="torch.no_grad()",
    var_count="(m - 1)",
    increment="1",
    weight="1 / n if self.momentum is None else self.momentum",
    update_mean="self.running_mean = (1 - f) * self.running_mean + f * mean",
    normalize="BatchNormFunction.apply(x, w, b, self.eps)",
)
MODULE_TEMPLATE = Template(_MODULE_SOURCE, GOOD_MODULE)


MODULE_BUGS = [
    ({"var_count": "m"}, [TRAINING], "biased batch variance"),
    (
        {"update_mean": "self.running_mean = f * self.running_mean + (1 - f) * mean"},
        [TRAINING],
        "Keras' convention",
    ),
    ({"weight": "0.1 if self.momentum is None else self.momentum"}, [MODES], "as 0.1"),
    ({"uses_batch": "True"}, [MODES], "eval mode normalizes with the batch statistics"),
    ({"increment": "0"}, [TRAINING], "num_batches_tracked is not incremented"),
    (
        {
            "register_mean": "self.running_mean = nn.Parameter(torch.zeros(num_features), "
            "requires_grad=False)"
        },
        [TRAINING, STATE],
        "register_buffer",
    ),
    (
        {"register_mean": "self.running_mean = torch.zeros(num_features)"},
        [STATE],
        "register_buffer",
    ),
    ({"grad_context": "torch.enable_grad()"}, [TRAINING], "requires grad"),
    ({"no_buffers": "pass"}, [MODES], "no attribute 'running_mean'"),
    (
        {
            "normalize": "(x - x.mean(dim=(0, 2, 3), keepdim=True)) * "
            "(x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + self.eps).rsqrt() "
            "* w.reshape(shape) + b.reshape(shape)"
        },
        [TRAINING, MODES],
        "must normalize through your BatchNormFunction",
    ),
    (
        {"normalize": "F.batch_norm(x, None, None, w, b, True, 0.0, self.eps)"},
        [TRAINING, MODES],
        "PyTorch's own normalization",
    ),
    (
        {
            "normalize": "nn.BatchNorm2d(c, eps=self.eps, affine=False).to(x)(x) * "
            "w.reshape(shape) + b.reshape(shape)"
        },
        [TRAINING],
        "PyTorch's own normalization",
    ),
]


@pytest.mark.parametrize("bug, cells, hint", MODULE_BUGS, ids=[hint for _, _, hint in MODULE_BUGS])
def test_module_bugs_lose_their_points_and_are_named(nb, bug, cells, hint):
    nb.assert_loses_points(cells, planted(MODULE_TEMPLATE, **bug), hint)


def test_module_template_with_no_bug_keeps_full_points(nb):
    nb.assert_keeps_points(list(POINTS), planted(MODULE_TEMPLATE))


INDEPENDENT_MODULE = """
class BatchNorm2d(nn.Module):
    '''Keeps the running variance update as one lerp_; eval as a precomputed scale/shift.'''

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.eps, self.momentum, self.affine = eps, momentum, affine
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.full((num_features,), 1.0)) if affine else None
        self.bias = nn.Parameter(torch.full((num_features,), 0.0)) if affine else None
        keep = track_running_stats
        self.register_buffer("running_mean", torch.zeros(num_features) if keep else None)
        self.register_buffer("running_var", torch.ones(num_features) if keep else None)
        self.register_buffer(
            "num_batches_tracked", torch.zeros((), dtype=torch.long) if keep else None
        )

    def _affine(self, x):
        c = x.shape[1]
        if self.weight is None:
            return x.new_ones(c), x.new_zeros(c)
        return self.weight, self.bias

    def forward(self, x):
        w, b = self._affine(x)
        if not self.training and self.track_running_stats:
            scale = w * torch.rsqrt(self.running_var + self.eps)
            shift = b - self.running_mean * scale
            return x * scale[None, :, None, None] + shift[None, :, None, None]
        if self.training and self.track_running_stats:
            var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=1)
            self.num_batches_tracked.add_(1)
            f = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
            self.running_mean.lerp_(mean, f)
            self.running_var.lerp_(var, f)
        return BatchNormFunction.apply(x, w, b, self.eps)
"""


def test_independent_module_keeps_full_points(nb):
    nb.assert_keeps_points(list(POINTS), INDEPENDENT_MODULE)


# --- fold_batchnorm ------------------------------------------------------------------------------

_FOLD_SOURCE = """
def fold_batchnorm(weight, bias, running_mean, running_var, gamma, beta, eps=1e-5):
    scale = {scale}
    if bias is None:
        {no_bias}
    folded_weight = {folded_weight}
    folded_bias = {folded_bias}
    return {result}
"""
GOOD_FOLD = dict(
    scale="gamma / (running_var + eps) ** 0.5",
    no_bias="bias = running_mean * 0",
    folded_weight="weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))",
    folded_bias="(bias - running_mean) * scale + beta",
    result="folded_weight, folded_bias",
)
FOLD_TEMPLATE = Template(_FOLD_SOURCE, GOOD_FOLD)


FOLD_BUGS = [
    ({"folded_bias": "bias * scale + beta"}, "running mean is forgotten"),
    ({"scale": "gamma / running_var ** 0.5"}, "eps is missing"),
    ({"scale": "gamma / (running_var + eps)"}, "square root is missing"),
    ({"scale": "gamma / (running_var ** 0.5 + eps)"}, "outside the square root"),
    ({"folded_bias": "(bias - running_mean) + beta"}, "bias is not scaled"),
    (
        {"folded_weight": "weight * scale.reshape(1, -1, *([1] * (weight.ndim - 2)))"},
        None,  # the visible case (5 inputs, 4 outputs) cannot broadcast: an error, no hint
    ),
    (
        {"no_bias": "return weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), None"},
        "always has a bias",
    ),
    ({"result": "torch.as_tensor(folded_weight), torch.as_tensor(folded_bias)"}, "same kind"),
    (
        {"folded_weight": "weight.__imul__(scale.reshape(-1, *([1] * (weight.ndim - 1))))"},
        "in place",
    ),
]


@pytest.mark.parametrize("bug, hint", FOLD_BUGS, ids=[str(hint) for _, hint in FOLD_BUGS])
def test_fold_bugs_lose_their_points_and_are_named(nb, bug, hint):
    nb.assert_loses_points([FOLD], planted(FOLD_TEMPLATE, **bug), hint)


def test_scaling_the_input_dimension_is_named_on_a_square_layer():
    from utils.checks import torch_module as tm

    ns: dict = {"torch": __import__("torch")}
    exec(planted(FOLD_TEMPLATE, folded_weight=FOLD_BUGS[5][0]["folded_weight"]), ns)
    square = tm.make_fold_case("square Linear", 1, (4, 4), "numpy")
    with pytest.raises(tm.CheckFailure, match="input dimension"):
        tm._fold_one(ns["fold_batchnorm"], square)


def test_fold_template_with_no_bug_keeps_full_points(nb):
    nb.assert_keeps_points([FOLD], planted(FOLD_TEMPLATE))


INDEPENDENT_FOLD = """
def fold_batchnorm(weight, bias, running_mean, running_var, gamma, beta, eps=1e-5):
    '''Per output row, as an explicit matrix product with a diagonal.'''
    lib = np if isinstance(weight, np.ndarray) else torch
    a = gamma / lib.sqrt(running_var + eps)
    flat = weight.reshape(weight.shape[0], -1)
    new_weight = (lib.diag(a) @ flat).reshape(weight.shape)
    b = 0 * a if bias is None else bias
    return new_weight, beta + a * b - a * running_mean
"""


def test_independent_fold_keeps_full_points(nb):
    nb.assert_keeps_points([FOLD], INDEPENDENT_FOLD)


# --- how far a bug reaches ----------------------------------------------------------------------

BLAST_RADIUS = [
    (
        planted(MODULE_TEMPLATE, weight="0.1 if self.momentum is None else self.momentum"),
        {MODES, STATE},
    ),
    (planted(MODULE_TEMPLATE, uses_batch="True"), {MODES, STATE}),
    (
        planted(MODULE_TEMPLATE, register_mean="self.running_mean = torch.zeros(num_features)"),
        {TRAINING, MODES, STATE},
    ),  # not moved by .double(): every scenario sees float32
    (planted(FOLD_TEMPLATE, scale="gamma / running_var ** 0.5"), {FOLD}),
]


@pytest.mark.parametrize(
    "code, lost", BLAST_RADIUS, ids=["momentum=None", "eval batch", "plain attribute", "fold"]
)
def test_a_bug_loses_exactly_the_points_of_the_cells_that_cover_it(nb, code, lost):
    expected = sum(POINTS.values()) - sum(POINTS[g] for g in lost)
    assert nb.score(list(POINTS), code=code) == expected


# --- knowledge check -----------------------------------------------------------------------------


@pytest.mark.parametrize("question", [1, 2])
def test_knowledge_check_needs_the_right_letter(nb, question):
    grade_id = f"test_kc_q{question}"
    scores = [nb.score([grade_id], code=f"answer_q{question} = '{letter}'") for letter in "abcd"]
    assert sorted(scores) == [0, 0, 0, 1]
    (outcome,) = nb.run_tests([grade_id], code=f"answer_q{question} = 'e'")
    assert not outcome.passed and "must be one of" in outcome.message


# --- found in review ------------------------------------------------------------------------------


REVIEW_MODULE_BUGS = [
    (  # Bessel's correction with the batch size instead of every value of a channel
        "unbiased = ((x - mean.reshape(shape)) ** 2).sum(dim=axes) / (m - 1)",
        "unbiased = ((x - mean.reshape(shape)) ** 2).sum(dim=axes) / m * x.shape[0] "
        "/ (x.shape[0] - 1)",
        [TRAINING],
        "N the batch size",
    ),
    (
        "torch.rsqrt(self.running_var + self.eps)",
        "torch.rsqrt(self.running_var)",
        [MODES],
        "without eps",
    ),
    (  # parameters initialised at random: only a fresh module shows it
        "nn.Parameter(torch.ones(num_features))",
        "nn.Parameter(torch.rand(num_features))",
        [STATE],
        "starts at",
    ),
    (  # a float32 factor: 1 / tensor(long) is float32
        "w = 1.0 / float(self.num_batches_tracked)",
        "w = 1.0 / self.num_batches_tracked",
        [MODES],
        "float32 rounding",
    ),
]


@pytest.mark.parametrize(
    "old, new, cells, hint", REVIEW_MODULE_BUGS, ids=[h for *_, h in REVIEW_MODULE_BUGS]
)
def test_review_module_mistakes_lose_their_points_and_are_named(nb, old, new, cells, hint):
    nb.assert_loses_points(cells, nb.planted("batchnorm2d_module", (old, new, 1)), hint)


def test_a_mistake_that_leaves_the_failing_value_unchanged_is_not_named():
    import torch

    from utils.checks import torch_module as tm

    s = tm.scenarios(tm.VISIBLE, "modes")[1]  # momentum=None
    reference = list(tm.trace(torch.nn.BatchNorm2d, s))
    expected = reference[3]["running_mean"]
    nudged = tm.Value(expected.data * (1 + 1e-7), expected.dtype, False, False)
    found = tm.module_mistakes(s, 3, "running_mean", nudged, expected)
    assert not any("variance" in f for f in found), found


REVIEW_CORRECT = {
    "Function: setup_context, saves x_hat and inv_std from it": """
class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(x, gamma, beta, eps=1e-5):
        dims = [0, *range(2, x.dim())]
        sh = [1, -1] + [1] * (x.dim() - 2)
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        return gamma.reshape(sh) * (x - mean) * torch.rsqrt(var + eps) + beta.reshape(sh)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, gamma, beta, *rest = inputs
        eps = rest[0] if rest else 1e-5
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        istd = torch.rsqrt(var + eps)
        ctx.save_for_backward((x - mean) * istd, istd, gamma)

    @staticmethod
    def backward(ctx, dy):
        xh, istd, gamma = ctx.saved_tensors
        dims = [0, *range(2, dy.dim())]
        sh = [1, -1] + [1] * (dy.dim() - 2)
        n = dy.numel() // dy.shape[1]
        g = dy * gamma.reshape(sh)
        dx = (n * g - g.sum(dims, keepdim=True) - xh * (g * xh).sum(dims, keepdim=True)) * istd / n
        return (dx, (dy * xh).sum(dims) if ctx.needs_input_grad[1] else None,
                dy.sum(dims) if ctx.needs_input_grad[2] else None, None)
""",
    "fold: einsum": """
def fold_batchnorm(weight, bias, running_mean, running_var, gamma, beta, eps=1e-5):
    lib = torch if isinstance(weight, torch.Tensor) else np
    s = gamma / (running_var + eps) ** 0.5
    w = lib.einsum("o,o...->o...", s, weight)
    if bias is None:
        return w, beta - running_mean * s
    return w, s * (bias - running_mean) + beta
""",
    "fold: np.sqrt, which returns a tensor for a tensor": """
def fold_batchnorm(weight, bias, running_mean, running_var, gamma, beta, eps=1e-5):
    s = gamma / np.sqrt(running_var + eps)
    b = 0 * running_mean if bias is None else bias
    return weight * s.reshape(-1, *([1] * (weight.ndim - 1))), beta + (b - running_mean) * s
""",
}


@pytest.mark.parametrize("label", list(REVIEW_CORRECT))
def test_review_correct_variants_keep_full_points(nb, label):
    code = REVIEW_CORRECT[label]
    if "BatchNormFunction" in code:
        code = with_module(nb, code)
    nb.assert_keeps_points(list(POINTS), code)


def test_a_wrong_default_eps_in_fold_loses_the_points(nb):
    """Every fold call but one passes eps; the default must still be the contract's 1e-5."""
    code = """
_solution_fold = fold_batchnorm


def fold_batchnorm(weight, bias, running_mean, running_var, gamma, beta, eps=1e-3):
    return _solution_fold(weight, bias, running_mean, running_var, gamma, beta, eps)
"""
    nb.assert_loses_points([FOLD], code, "default must be eps=1e-05")
