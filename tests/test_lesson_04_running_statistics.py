"""Lesson 04: the notebook's own grade cells (hidden tests included) against planted bugs.

Each classic mistake in a BatchNorm1d class must lose the points of the grade cell that covers
it, with a message naming the mistake; an independently written correct class must keep every
point; a class that calls PyTorch must lose them all.
"""

from __future__ import annotations

import pytest

from tests.harness import (
    Template,
    planted,
    planted_and_correct_tests,
    planted_cases,
    solution_tests,
)

pytestmark = pytest.mark.slow

TRAINING = "test_bn_training"
EVAL = "test_bn_eval"
CUMULATIVE = "test_bn_cumulative"
OPTIONS = "test_bn_options"
BATCH_OF_ONE = "test_bn_batch_of_one"
ALL = [TRAINING, EVAL, CUMULATIVE, OPTIONS, BATCH_OF_ONE]
POINTS = {TRAINING: 3, EVAL: 2, CUMULATIVE: 1, OPTIONS: 2, BATCH_OF_ONE: 1}


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    POINTS, written={"written_stale_statistics": 2}
)


def test_the_provided_functions_are_locked_and_not_graded(nb):
    cell = next(c for c in nb.nb.cells if c.get("id") == "provided_batchnorm")
    meta = cell.metadata["nbgrader"]
    assert meta["locked"] and not meta["grade"] and not meta["solution"]


# --- planted bugs ----------------------------------------------------------------------------
# A learner-shaped class with slots; GOOD fills them correctly, each bug replaces one or two.

_SOURCE = """
class BatchNorm1d:
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        self.eps, self.momentum, self.affine = eps, momentum, affine
        self.track = track_running_stats
        self.training = True
        self.gamma = {gamma_init}
        self.beta = np.zeros(num_features) if affine else None
        self.dgamma = self.dbeta = None
        if {keeps_buffers}:
            self.running_mean = np.zeros(num_features)
            self.running_var = np.{var_init}(num_features)
            self.num_batches_tracked = 0
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def train(self, mode=True):
        self.training = {mode}
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        n = x.shape[0]
        uses_batch = {uses_batch}
        if {too_small}:
            raise ValueError("need at least two examples")
        with np.errstate(all="ignore"):  # a planted bug may divide by N - 1 = 0
            mean, var = x.mean(axis=0), x.var(axis=0)
            if {updates}:
                self.num_batches_tracked += {increment}
                w = {weight}
                unbiased = {running_var_source}
                self.running_mean = {blend_mean}
                self.running_var = {blend_var}
        if not self.training and self.track:
            self.num_batches_tracked += {eval_increment}
        if not uses_batch:
            mean, var = self.running_mean, self.running_var
        {centering}
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.x_hat = centered * self.inv_std
        self.used_batch = uses_batch
        if not self.affine:
            return self.x_hat
        return self.gamma * self.x_hat + self.beta

    def backward(self, dout):
        g = self.gamma if self.affine else 1.0
        dxh = dout * g
        if {batch_backward}:
            n = dout.shape[0]
            xh = self.x_hat
            dx = self.inv_std / n * (n * dxh - dxh.sum(0) - xh * (dxh * xh).sum(0))
        else:
            dx = dxh * self.inv_std
        if self.affine:
            self.dgamma, self.dbeta = (dout * self.x_hat).sum(0), dout.sum(0)
        return dx
"""
GOOD = dict(
    gamma_init="np.ones(num_features) if affine else None",
    keeps_buffers="track_running_stats",
    var_init="ones",
    mode="mode",
    uses_batch="self.training or not self.track",
    too_small="uses_batch and n < 2",
    updates="self.training and self.track",
    increment="1",
    eval_increment="0",
    weight="1 / self.num_batches_tracked if self.momentum is None else self.momentum",
    running_var_source="var * n / (n - 1)",
    blend_mean="(1 - w) * self.running_mean + w * mean",
    blend_var="(1 - w) * self.running_var + w * unbiased",
    centering="centered = x - mean",
    batch_backward="self.used_batch",
)
TEMPLATE = Template(_SOURCE, GOOD)


BUGS = [
    ({"running_var_source": "var"}, [TRAINING], "biased batch variance"),
    (
        {
            "blend_mean": "w * self.running_mean + (1 - w) * mean",
            "blend_var": "w * self.running_var + (1 - w) * unbiased",
        },
        [TRAINING],
        "Keras' convention",
    ),
    ({"uses_batch": "True"}, [EVAL], "eval mode normalizes with the batch statistics"),
    ({"updates": "self.track"}, [EVAL], "updated in eval mode too"),
    ({"eval_increment": "1"}, [EVAL], "incremented in eval mode too"),
    ({"weight": "0.1 if self.momentum is None else self.momentum"}, [CUMULATIVE], "as 0.1"),
    (
        {
            "weight": "1 / (self.num_batches_tracked + 1) if self.momentum is None "
            "else self.momentum"
        },
        [CUMULATIVE],
        "counts the initial running values",
    ),
    (
        {"weight": "1 / self.num_batches_tracked if not self.momentum else self.momentum"},
        [TRAINING, EVAL],
        "momentum=0 is treated like momentum=None",
    ),
    ({"increment": "0"}, [TRAINING], "num_batches_tracked is not incremented"),
    ({"too_small": "False"}, [BATCH_OF_ONE], "must raise ValueError"),
    ({"too_small": "n < 2 and self.training"}, [BATCH_OF_ONE], "must raise ValueError"),
    ({"batch_backward": "True"}, [EVAL], "training-mode formula"),
    ({"var_init": "zeros"}, [TRAINING], "running_var starts at zeros"),
    ({"gamma_init": "np.ones(num_features)"}, [OPTIONS], "must be None with affine=False"),
    ({"keeps_buffers": "True"}, [OPTIONS], "must be None with track_running_stats=False"),
    ({"mode": "True"}, [EVAL], "training is True, expected False"),
    ({"centering": "x -= mean\n        centered = x"}, [TRAINING], "changed its input x in place"),
]


@pytest.mark.parametrize(
    "bug, lost",
    [
        ({"weight": "0.1 if self.momentum is None else self.momentum"}, CUMULATIVE),
        ({"too_small": "False"}, BATCH_OF_ONE),
    ],
    ids=["momentum=None", "batch of one"],
)
def test_a_bug_in_one_feature_loses_only_that_cells_points(nb, bug, lost):
    assert nb.score(ALL, code=planted(TEMPLATE, **bug)) == sum(POINTS.values()) - POINTS[lost]


def test_a_layer_raising_in_eval_on_a_batch_of_one_loses_the_eval_points(nb):
    nb.assert_loses_points([EVAL], planted(TEMPLATE, too_small="n < 2"), "raised ValueError")


# --- an independently written correct class --------------------------------------------------

INDEPENDENT = """
class BatchNorm1d:
    '''Keeps its state in a dict; eval mode as a precomputed per-feature scale and shift.'''

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        self.cfg = dict(d=num_features, eps=eps, m=momentum, affine=affine,
                        track=track_running_stats)
        self.training = True
        self.gamma = np.full(num_features, 1.0) if affine else None
        self.beta = np.full(num_features, 0.0) if affine else None
        self.running_mean = np.full(num_features, 0.0) if track_running_stats else None
        self.running_var = np.full(num_features, 1.0) if track_running_stats else None
        self.num_batches_tracked = 0 if track_running_stats else None
        self.dgamma = None
        self.dbeta = None

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        self.training = False
        return self

    def __call__(self, x):
        return self.forward(x)

    def _scale_shift(self):
        g = self.gamma if self.cfg["affine"] else np.full(self.cfg["d"], 1.0)
        b = self.beta if self.cfg["affine"] else np.full(self.cfg["d"], 0.0)
        return g, b

    def forward(self, x):
        g, b = self._scale_shift()
        if not self.training and self.cfg["track"]:
            s = (self.running_var + self.cfg["eps"]) ** -0.5
            self.saved = ("fixed", (x - self.running_mean) * s, s, g)
            return x * (g * s) + (b - g * s * self.running_mean)
        n = len(x)
        if n <= 1:
            raise ValueError("one example has no spread to normalize by")
        mu = np.einsum("ij->j", x) / n
        dev = x - mu
        ss = np.einsum("ij,ij->j", dev, dev)
        if self.training and self.cfg["track"]:
            self.num_batches_tracked = self.num_batches_tracked + 1
            m = self.cfg["m"]
            f = (1.0 / self.num_batches_tracked) if m is None else m
            self.running_mean = self.running_mean + f * (mu - self.running_mean)
            self.running_var = self.running_var + f * (ss / (n - 1) - self.running_var)
        s = 1.0 / np.sqrt(ss / n + self.cfg["eps"])
        xh = dev * s
        self.saved = ("batch", xh, s, g)
        return xh * g + b

    def backward(self, dout):
        kind, xh, s, g = self.saved
        if kind == "fixed":
            dx = dout * g * s
        else:
            dxh = dout * g
            dx = s * (dxh - dxh.mean(axis=0) - xh * (dxh * xh).mean(axis=0))
        if self.cfg["affine"]:
            self.dbeta = np.einsum("ij->j", dout)
            self.dgamma = np.einsum("ij,ij->j", dout, xh)
        return dx
"""

TORCH_CLASS = """
    import torch as _t

    class BatchNorm1d:
        def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                     track_running_stats=True):
            self.m = _t.nn.BatchNorm1d(num_features, eps, momentum, affine, track_running_stats,
                                       dtype=_t.float64)

        training = property(lambda self: self.m.training)
        gamma = property(lambda self: None if self.m.weight is None
                         else self.m.weight.detach().numpy().copy())
        beta = property(lambda self: None if self.m.bias is None
                        else self.m.bias.detach().numpy().copy())
        running_mean = property(lambda self: None if self.m.running_mean is None
                                else self.m.running_mean.numpy().copy())
        running_var = property(lambda self: None if self.m.running_var is None
                               else self.m.running_var.numpy().copy())
        num_batches_tracked = property(lambda self: None if self.m.num_batches_tracked is None
                                       else int(self.m.num_batches_tracked))

        def train(self, mode=True):
            self.m.train(mode)
            return self

        def eval(self):
            return self.train(False)

        def forward(self, x):
            self.x = _t.tensor(x, requires_grad=True)
            self.out = self.m(self.x)
            return self.out.detach().numpy()

        __call__ = forward

        def backward(self, dout):
            self.out.backward(_t.tensor(dout))
            return self.x.grad.numpy()
    """

PLANTED = [
    pytest.param(cells, planted(TEMPLATE, **bug), hint, id=hint) for bug, cells, hint in BUGS
]
PLANTED += planted_cases(ALL, [("calls torch", TORCH_CLASS, "PyTorch")])


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, {"template": (ALL, planted(TEMPLATE)), "independent": (ALL, INDEPENDENT)}
)


# --- knowledge check -------------------------------------------------------------------------


@pytest.mark.parametrize("question, key", [(1, "a"), (2, "c")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    outcomes = nb.assert_only_the_key_passes(
        f"test_kc_q{question}", f"answer_q{question}", key, "abcde"
    )
    assert "must be one of" in outcomes["e"].message
