"""Lesson 00_gradient_checking, the two small layers (scale and shift, centering): the
notebook's own grade cells (hidden tests included) against planted bugs in each forward and
backward, and independently written correct versions of each layer. The notebook itself, its
two measuring tools and the knowledge check are tested in
tests/test_lesson_00_gradient_checking.py.

Each planted bug is a classic mistake; it must lose the points of its exercise's grade cells,
and where the check can name the mistake, the failure message must say so. Each independent
implementation (written differently from the solution) must keep full points.
"""

from tests.harness import planted_and_correct_tests, planted_cases

SCALE_SHIFT_FORWARD = ["test_scale_shift_forward"]
SCALE_SHIFT_BACKWARD = ["test_scale_shift_backward"]
CENTER_FORWARD = ["test_center_forward"]
CENTER_BACKWARD = ["test_center_backward"]


# --- exercise 3: scale and shift -----------------------------------------------------------

SCALE_SHIFT_FORWARD_BUGS = {
    "gamma and beta swapped": (
        """
        def scale_shift_forward(x, gamma, beta):
            return x * beta + gamma, {"x": x, "gamma": gamma}
        """,
        "gamma and beta swapped",
    ),
    "beta missing": (
        """
        def scale_shift_forward(x, gamma, beta):
            return x * gamma, {"x": x, "gamma": gamma}
        """,
        "beta is missing",
    ),
    "changes x in place": (
        """
        def scale_shift_forward(x, gamma, beta):
            x *= gamma
            x += beta
            return x, {"x": x, "gamma": gamma}
        """,
        "changed its argument x in place",
    ),
    "no cache": (
        """
        def scale_shift_forward(x, gamma, beta):
            return x * gamma + beta
        """,
        "must return a tuple (out, cache)",
    ),
    "calls torch": (
        """
        import torch

        def scale_shift_forward(x, gamma, beta):
            out = torch.tensor(x) * torch.tensor(gamma) + torch.tensor(beta)
            return out.numpy(), {"x": x, "gamma": gamma}
        """,
        "called PyTorch",
    ),
}

SCALE_SHIFT_BACKWARD_BUGS = {
    "not summed over the batch": (
        """
        def scale_shift_backward(dout, cache):
            return dout * cache["gamma"], dout * cache["x"], dout
        """,
        "sum over axis 0",
    ),
    "dgamma and dbeta swapped": (
        """
        def scale_shift_backward(dout, cache):
            x, gamma = cache["x"], cache["gamma"]
            return dout * gamma, dout.sum(axis=0), (dout * x).sum(axis=0)
        """,
        "dgamma and dbeta swapped",
    ),
    "dx without gamma": (
        """
        def scale_shift_backward(dout, cache):
            x = cache["x"]
            return dout, (dout * x).sum(axis=0), dout.sum(axis=0)
        """,
        "missing the factor gamma",
    ),
    "mean instead of sum": (
        """
        def scale_shift_backward(dout, cache):
            x, gamma = cache["x"], cache["gamma"]
            return dout * gamma, (dout * x).mean(axis=0), dout.mean(axis=0)
        """,
        "mean over the batch instead of the sum",
    ),
    "sum over the features": (
        """
        def scale_shift_backward(dout, cache):
            x, gamma = cache["x"], cache["gamma"]
            return dout * gamma, (dout * x).sum(axis=1), dout.sum(axis=1)
        """,
        "axis 1 (the features)",
    ),
    "keepdims": (
        """
        def scale_shift_backward(dout, cache):
            x, gamma = cache["x"], cache["gamma"]
            return dout * gamma, (dout * x).sum(0, keepdims=True), dout.sum(0, keepdims=True)
        """,
        "keepdims",
    ),
    "calls torch": (
        """
        import torch

        def scale_shift_backward(dout, cache):
            x = torch.tensor(cache["x"])
            gamma = torch.tensor(cache["gamma"], requires_grad=True)
            beta = torch.zeros(gamma.shape, dtype=torch.float64, requires_grad=True)
            xr = x.clone().requires_grad_(True)
            out = xr * gamma + beta
            out.backward(torch.tensor(dout))
            return xr.grad.numpy(), gamma.grad.numpy(), beta.grad.numpy()
        """,
        "called PyTorch",
    ),
}
# A correct backward paired with a wrong forward: autograd agrees, finite differences not.
SCALE_SHIFT_BACKWARD_BUGS["wrong forward"] = (
    """
    def scale_shift_forward(x, gamma, beta):
        return x * gamma + 2.0 * beta, {"x": x, "gamma": gamma}
    """,
    "not your own forward",
)

INDEPENDENT_SCALE_SHIFT = """
    def scale_shift_forward(x, gamma, beta):
        out = np.einsum("nd,d->nd", x, gamma) + beta[np.newaxis, :]
        return out, (x.copy(), gamma.copy())

    def scale_shift_backward(dout, cache):
        x, gamma = cache
        ones = np.ones(dout.shape[0])
        return gamma[np.newaxis, :] * dout, np.einsum("nd,nd->d", dout, x), ones @ dout
    """


# --- exercise 4: centering -----------------------------------------------------------------

CENTER_FORWARD_BUGS = {
    "row means": (
        """
        def center_forward(x):
            return x - x.mean(axis=1, keepdims=True), {"n": x.shape[0]}
        """,
        "each row's mean",
    ),
    "mean of the whole array": (
        """
        def center_forward(x):
            return x - x.mean(), {"n": x.shape[0]}
        """,
        "mean of the whole array",
    ),
    # Raises on the visible (4, 3) batch; on the hidden square batch it runs, wrongly.
    "row means without keepdims": (
        """
        def center_forward(x):
            return x - x.mean(axis=1), {"n": x.shape[0]}
        """,
        None,
    ),
    "changes x in place": (
        """
        def center_forward(x):
            x -= x.mean(axis=0)
            return x, {"n": x.shape[0]}
        """,
        "changed its argument x in place",
    ),
    "calls torch": (
        """
        import torch

        def center_forward(x):
            t = torch.tensor(x)
            return (t - t.mean(dim=0)).numpy(), {"n": x.shape[0]}
        """,
        "called PyTorch",
    ),
}

CENTER_BACKWARD_BUGS = {
    "mean term missing": (
        """
        def center_backward(dout, cache):
            return dout.copy()
        """,
        "'- mean of dout' term is missing",
    ),
    "mean over axis 1": (
        """
        def center_backward(dout, cache):
            return dout - dout.mean(axis=1, keepdims=True)
        """,
        "over axis 1",
    ),
    "mean of the whole dout": (
        """
        def center_backward(dout, cache):
            return dout - dout.mean()
        """,
        "mean of the whole dout",
    ),
    "mean term added": (
        """
        def center_backward(dout, cache):
            return dout + dout.mean(axis=0)
        """,
        "added instead of subtracted",
    ),
    "calls torch": (
        """
        import torch

        def center_backward(dout, cache):
            t = torch.tensor(dout)
            return (t - t.mean(dim=0)).numpy()
        """,
        "called PyTorch",
    ),
}
CENTER_BACKWARD_BUGS["wrong forward"] = (
    """
    def center_forward(x):
        return x - 0.5 * x.mean(axis=0), {"n": x.shape[0]}
    """,
    "not your own forward",
)

# Centering as a matrix: out = (I - 11^T / N) x, and its transpose for the gradient.
INDEPENDENT_CENTER = """
    def _centering_matrix(n):
        return np.eye(n) - np.full((n, n), 1.0 / n)

    def center_forward(x):
        return _centering_matrix(len(x)) @ x, len(x)

    def center_backward(dout, n):
        return _centering_matrix(n).T @ dout
    """


# --- both layers: planted bugs lose the points, independent code keeps them ----------------

PLANTED = [
    *planted_cases(SCALE_SHIFT_FORWARD, SCALE_SHIFT_FORWARD_BUGS),
    *planted_cases(SCALE_SHIFT_BACKWARD, SCALE_SHIFT_BACKWARD_BUGS),
    *planted_cases(CENTER_FORWARD, CENTER_FORWARD_BUGS),
    *planted_cases(CENTER_BACKWARD, CENTER_BACKWARD_BUGS),
]
INDEPENDENT = {
    "scale and shift": (SCALE_SHIFT_FORWARD + SCALE_SHIFT_BACKWARD, INDEPENDENT_SCALE_SHIFT),
    "centering": (CENTER_FORWARD + CENTER_BACKWARD, INDEPENDENT_CENTER),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, INDEPENDENT
)
