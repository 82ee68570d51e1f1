"""Lesson 07: correct code written differently from the solution keeps full points, through
the notebook's own grade cells (hidden tests included): one independent implementation of all
eight contract functions (explicit loops over the sets and a Jacobian per set, nothing shared
with the solution) and more correct variants a learner may write; a PyTorch-using version must
lose every exercise's points. Planted bugs: tests/test_lesson_07_normalization_variants.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

EXERCISES = [
    "test_layernorm_forward", "test_layernorm_backward",
    "test_groupnorm_forward", "test_groupnorm_rejects_uneven_groups", "test_groupnorm_backward",
    "test_instancenorm_forward", "test_instancenorm_backward",
    "test_rmsnorm_forward", "test_rmsnorm_backward",
]  # fmt: skip
"""Every exercise's grade cells, in notebook order."""


# --- independent correct code, and PyTorch -----------------------------------------------------

INDEPENDENT = """
def _normalize_sets(sets, eps, center):
    '''sets (S, M): each row normalized by explicit loops; returns (x_hat, jacobians).'''
    x_hat = np.empty(sets.shape)
    jacobians = []
    for i, row in enumerate(sets):
        m = row.size
        shifted = row - (sum(row) / m if center else 0.0)
        scale = (float(np.dot(shifted, shifted)) / m + eps) ** -0.5
        x_hat[i] = shifted * scale
        projector = np.eye(m) - (1.0 / m if center else 0.0)
        jacobians.append(scale * projector - np.outer(shifted, shifted) @ projector * scale**3 / m)
    return x_hat, jacobians


def _pull_back(jacobians, dsets):
    return np.stack([j.T @ d for j, d in zip(jacobians, dsets)])


def layernorm_forward(x, gamma, beta, eps=1e-5):
    rows = np.array(x).reshape(-1, x.shape[-1])
    x_hat, jac = _normalize_sets(rows, eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("...d,d->...d", x_hat, gamma) + beta, (x_hat, gamma, jac)


def layernorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    d = dout.shape[-1]
    dx = _pull_back(jac, (dout * gamma).reshape(-1, d)).reshape(dout.shape)
    flat = dout.reshape(-1, d)
    return dx, np.einsum("id,id->d", flat, x_hat.reshape(-1, d)), np.einsum("id->d", flat)


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    size = c // num_groups
    sets = np.stack([x[i, g * size:(g + 1) * size].ravel()
                     for i in range(n) for g in range(num_groups)])
    x_hat, jac = _normalize_sets(sets, eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    out = np.einsum("nchw,c->nchw", x_hat, gamma) + beta[:, None, None]
    return out, (x_hat, gamma, jac, num_groups)


def groupnorm_backward(dout, cache):
    x_hat, gamma, jac, groups = cache
    n = dout.shape[0]
    dsets = np.einsum("nchw,c->nchw", dout, gamma).reshape(n * groups, -1)
    dx = _pull_back(jac, dsets).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, x_hat), np.einsum("nchw->c", dout)


def instancenorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    x_hat, jac = _normalize_sets(np.array(x).reshape(n * c, h * w), eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("nchw,c->nchw", x_hat, gamma) + beta[:, None, None], (x_hat, gamma, jac)


def instancenorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    n, c = dout.shape[:2]
    dsets = np.einsum("nchw,c->nchw", dout, gamma).reshape(n * c, -1)
    dx = _pull_back(jac, dsets).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, x_hat), np.einsum("nchw->c", dout)


def rmsnorm_forward(x, gamma, eps=1e-6):
    rows = np.array(x).reshape(-1, x.shape[-1])
    x_hat, jac = _normalize_sets(rows, eps, center=False)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("...d,d->...d", x_hat, gamma), (x_hat, gamma, jac)


def rmsnorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    dx = _pull_back(jac, (dout * gamma).reshape(-1, dout.shape[-1])).reshape(dout.shape)
    d = dout.shape[-1]
    return dx, np.einsum("id,id->d", dout.reshape(-1, d), x_hat.reshape(-1, d))
"""


def test_independent_implementation_keeps_full_points(nb):
    assert nb.score(EXERCISES, code=INDEPENDENT) == 18


OTHER_CORRECT = {
    # the staged graph (dvar, dmean) backward, einsum, GroupNorm through transposes to
    # channels-last, list and dict caches
    "staged backward, einsum, transposes": """
def _fwd_rows(v, eps):
    mu = v.mean(-1, keepdims=True)
    xc = v - mu
    var = (xc * xc).mean(-1, keepdims=True)
    ivar = 1.0 / np.sqrt(var + eps)
    return xc * ivar, (xc, var, ivar)

def _bwd_rows(dxh, st, eps):
    xc, var, ivar = st
    m = xc.shape[-1]
    dvar = np.sum(dxh * xc, axis=-1, keepdims=True) * -0.5 * (var + eps) ** -1.5
    dmu = np.sum(-dxh * ivar, axis=-1, keepdims=True)
    dmu = dmu + dvar * np.mean(-2.0 * xc, axis=-1, keepdims=True)
    return dxh * ivar + dvar * 2.0 * xc / m + dmu / m

def layernorm_forward(x, gamma, beta, eps=1e-5):
    xh, st = _fwd_rows(x, eps)
    out = np.einsum("...d,d->...d", xh, gamma) + beta
    return out, {"st": st, "xh": xh, "g": gamma, "e": eps}

def layernorm_backward(dout, cache):
    dx = _bwd_rows(dout * cache["g"], cache["st"], cache["e"])
    lead = "abcdefg"[: dout.ndim - 1]
    dgamma = np.einsum(f"{lead}z,{lead}z->z", dout, cache["xh"])
    return dx, dgamma, np.einsum(f"{lead}z->z", dout)

def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    N, C, H, W = x.shape
    if C % num_groups != 0:
        raise ValueError("C must be a multiple of num_groups")
    # channels-last then split groups: (N, H, W, G, C/G) -> (N, G, H, W, C/G)
    t = np.transpose(x, (0, 2, 3, 1)).reshape(N, H, W, num_groups, C // num_groups)
    t = np.transpose(t, (0, 3, 1, 2, 4)).reshape(N, num_groups, -1)
    xh_t, st = _fwd_rows(t, eps)
    xh = xh_t.reshape(N, num_groups, H, W, C // num_groups)
    xh = np.transpose(xh, (0, 1, 4, 2, 3)).reshape(x.shape)
    out = np.einsum("nchw,c->nchw", xh, gamma) + beta.reshape(1, C, 1, 1)
    return out, {"st": st, "xh": xh, "g": gamma, "G": num_groups, "e": eps}

def groupnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    G = cache["G"]
    d = dout * cache["g"].reshape(1, C, 1, 1)
    t = np.transpose(d, (0, 2, 3, 1)).reshape(N, H, W, G, C // G)
    t = np.transpose(t, (0, 3, 1, 2, 4)).reshape(N, G, -1)
    dx_t = _bwd_rows(t, cache["st"], cache["e"])
    dx = np.transpose(dx_t.reshape(N, G, H, W, C // G), (0, 1, 4, 2, 3)).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, cache["xh"]), np.einsum("nchw->c", dout)

def instancenorm_forward(x, gamma, beta, eps=1e-5):
    N, C, H, W = x.shape
    xh, st = _fwd_rows(x.reshape(N, C, H * W), eps)
    xh = xh.reshape(x.shape)
    out = np.einsum("nchw,c->nchw", xh, gamma) + beta[None, :, None, None]
    return out, [st, xh, gamma, eps]

def instancenorm_backward(dout, cache):
    st, xh, gamma, eps = cache
    N, C, H, W = dout.shape
    dxh = (dout * gamma[None, :, None, None]).reshape(N, C, -1)
    dx = _bwd_rows(dxh, st, eps).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, xh), dout.sum(axis=(0, 2, 3))

def rmsnorm_forward(x, gamma, eps=1e-6):
    ms = np.einsum("...d,...d->...", x, x)[..., None] / x.shape[-1]
    inv = (ms + eps) ** -0.5
    return x * inv * gamma, {"x": x, "inv": inv, "g": gamma}

def rmsnorm_backward(dout, cache):
    x, inv, g = cache["x"], cache["inv"], cache["g"]
    D = x.shape[-1]
    dxh = dout * g
    # staged: xh = x * inv, inv = (ms + eps)^-1/2, ms = sum(x^2)/D
    dinv = np.sum(dxh * x, axis=-1, keepdims=True)
    dms = dinv * -0.5 * inv ** 3
    dx = dxh * inv + dms * 2 * x / D
    return dx, (dout * x * inv).reshape(-1, D).sum(0)
""",
    # GroupNorm as a 5-D view with statistics over axis=(2, 3, 4), instance norm as G = C,
    # means and variances via np.add.reduce and np.square, tuple caches
    "5-D group view, add.reduce": """
def layernorm_forward(x, gamma, beta, eps=1e-5):
    D = x.shape[-1]
    s = np.add.reduce(x, axis=-1) / D
    xc = x - s[..., None]
    v = np.add.reduce(xc * xc, axis=-1) / D
    std = np.sqrt(v + eps)[..., None]
    xh = xc / std
    return xh * gamma + beta, (xh, std, gamma)

def layernorm_backward(dout, cache):
    xh, std, gamma = cache
    D = dout.shape[-1]
    g = dout * gamma
    dx = (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True)) / std
    axes = tuple(range(dout.ndim - 1))
    return dx, np.sum(dout * xh, axis=axes), np.sum(dout, axis=axes)

def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    N, C, H, W = x.shape
    if C % num_groups:
        raise ValueError("num_groups does not divide C")
    v = x.reshape(N, num_groups, C // num_groups, H, W)
    mu = v.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(((v - mu) ** 2).mean(axis=(2, 3, 4), keepdims=True) + eps)
    xh = ((v - mu) / std).reshape(N, C, H, W)
    return xh * gamma.reshape(-1, 1, 1) + beta.reshape(-1, 1, 1), (xh, std, gamma, num_groups)

def groupnorm_backward(dout, cache):
    xh, std, gamma, G = cache
    N, C, H, W = dout.shape
    g = (dout * gamma.reshape(-1, 1, 1)).reshape(N, G, C // G, H, W)
    x5 = xh.reshape(N, G, C // G, H, W)
    ax = (2, 3, 4)
    dx = (g - g.mean(axis=ax, keepdims=True) - x5 * (g * x5).mean(axis=ax, keepdims=True)) / std
    dgamma, dbeta = np.sum(dout * xh, axis=(0, 2, 3)), np.sum(dout, axis=(0, 2, 3))
    return dx.reshape(dout.shape), dgamma, dbeta

def instancenorm_forward(x, gamma, beta, eps=1e-5):
    N, C, H, W = x.shape
    return groupnorm_forward(x, gamma, beta, C, eps=eps)

def instancenorm_backward(dout, cache):
    return groupnorm_backward(dout, cache)

def rmsnorm_forward(x, gamma, eps=1e-6):
    r = np.sqrt(np.square(x).sum(axis=-1, keepdims=True) / x.shape[-1] + eps)
    xh = x / r
    return xh * gamma, (xh, r, gamma)

def rmsnorm_backward(dout, cache):
    xh, r, gamma = cache
    g = dout * gamma
    dx = (g - xh * (g * xh).mean(axis=-1, keepdims=True)) / r
    return dx, (dout * xh).reshape(-1, dout.shape[-1]).sum(axis=0)
""",
}
"""More correct implementations a learner may write; each must keep full points."""


@pytest.mark.parametrize("label", list(OTHER_CORRECT))
def test_other_correct_implementations_keep_full_points(nb, label):
    nb.assert_keeps_points(EXERCISES, OTHER_CORRECT[label])


def test_calling_torch_loses_the_points_of_every_exercise(nb):
    code = """
    import importlib

    def _via_torch(fn):
        def forward(x, gamma, *rest):
            torch = importlib.import_module("torch")
            t = torch.tensor(np.array(x))
            return fn(torch, t, gamma, *rest).numpy(), None
        return forward

    def _backward(dout, cache):
        importlib.import_module("torch").zeros(1)
        return (np.zeros(dout.shape), np.zeros(dout.shape[1]), np.zeros(dout.shape[1]))

    layernorm_forward = _via_torch(
        lambda torch, t, g, b, eps=1e-5: torch.nn.functional.layer_norm(
            t, t.shape[-1:], torch.tensor(g), torch.tensor(b), eps))
    groupnorm_forward = _via_torch(
        lambda torch, t, g, b, groups, eps=1e-5: torch.nn.functional.group_norm(
            t, groups, torch.tensor(g), torch.tensor(b), eps))
    instancenorm_forward = _via_torch(
        lambda torch, t, g, b, eps=1e-5: torch.nn.functional.instance_norm(
            t, weight=torch.tensor(g), bias=torch.tensor(b), eps=eps))
    rmsnorm_forward = _via_torch(
        lambda torch, t, g, eps=1e-6: torch.nn.functional.rms_norm(
            t, t.shape[-1:], torch.tensor(g), eps))
    layernorm_backward = groupnorm_backward = instancenorm_backward = _backward
    rmsnorm_backward = _backward
    """
    outcomes = nb.run_tests(EXERCISES, code=code)
    assert not any(o.passed for o in outcomes)
    assert all("PyTorch" in o.message for o in outcomes), [o.message for o in outcomes]
