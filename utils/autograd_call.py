"""Lessons 09 and 11's calls into the learner's PyTorch code: plain data in, plain data out.

Lesson 09's checks hand the learner's ``BatchNormFunction`` and ``BatchNorm2d`` torch tensors
and read autograd's answers (gradients, the graph's nodes, parameters and buffers); lesson 11's
hand the learner's Triton launchers tensors that sit in a band of NaN, and its
``TritonBatchNorm`` tensors on the device the kernels run on. None of that
crosses the grader's channel, so each such step is one function here, in the process that holds
the learner's code: it builds the tensors from ndarrays, calls the learner's code, and returns
ndarrays, numbers, strings and dicts/lists of those (``describe``), or the learner's module
itself (a handle the next call gets back). The checks decide everything from what comes back.

``call(name, *args)`` runs ``CALLS[name](*args)``: here when the learner's objects are here (a
notebook in JupyterLab, the tests), in the graded kernel when an argument is the grading
checker's proxy of a kernel object (``grader.checker.call_in_kernel``, answered by
``grader.kernel_side``). The same function answers both ways, so there is one definition.

While the learner's code runs, a profiler (``utils.guard.Watcher``) refuses PyTorch's own
normalization (any ``*_norm`` kernel of torch, whatever the spelling) and, where the gradient
must be written by hand, the autograd engine; lesson 11's calls refuse PyTorch's reductions
too (a ``TorchFunctionMode``: the sums belong in the kernels). In grading these run in the
learner's process: a learner can get around them, so a refusal costs points but their silence
proves nothing (docs/grading-safety.md).

Errors of the learner's code come back as ``LearnerFailure`` naming what was called.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from utils.guard import Watcher

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
MISSING = {"kind": "missing"}
"""What ``describe`` says for an attribute the module does not have."""


class LearnerFailure(Exception):
    """The learner's code raised, returned something unusable or called something forbidden."""


def call(name: str, *args):
    """``CALLS[name](*args)``, in the process that holds the learner's objects."""
    checker = sys.modules.get("grader.checker")
    if checker is not None and any(isinstance(a, checker.Remote) for a in args):
        return checker.call_in_kernel(name, args)
    return CALLS[name](*args)


# --- what the profiler refuses (a utils.guard.Watcher): PyTorch's normalization and autograd --

NORM_KERNEL = re.compile(r"(batch|instance|layer|group|rms)_norm")
"""Names of torch functions that compute a normalization (F.batch_norm, torch.batch_norm,
torch.native_batch_norm, aten ops, decompositions, instance/layer/group norm that could be
bent into batch norm by a transpose)."""


def _forbidden_python(frame) -> str | None:
    """``_forbidden`` for a call of torch's Python code (an aten op by its op's name)."""
    name = frame.f_code.co_name
    if name == "__call__" and frame.f_code.co_filename.endswith("_ops.py"):
        name = str(getattr(frame.f_locals.get("self"), "__name__", ""))  # torch.ops.aten
    return _forbidden(name)


def _forbidden_builtin(func) -> str | None:
    """``_forbidden`` for a builtin of torch or of autograd's engine, else None."""
    owner = getattr(func, "__module__", None) or type(getattr(func, "__self__", None)).__name__
    if "torch" in str(owner) or "Engine" in str(owner):
        return _forbidden(getattr(func, "__name__", ""))
    return None


def _forbidden(name: str) -> str | None:
    """Why calling torch's ``name`` is refused: a normalization kernel, or the autograd engine
    (``run_backward``, behind ``torch.autograd.grad`` and ``.backward()``); None if allowed."""
    if NORM_KERNEL.search(name):
        return (
            f"it calls PyTorch's own normalization ({name}); compute the mean, the biased "
            "variance and the normalization yourself with tensor operations"
        )
    if name == "run_backward":
        return (
            "it runs autograd (torch.autograd.grad or .backward()) inside; the backward "
            "must be written out by hand from the closed-form gradient"
        )
    return None


def _learner_error(what: str, error: Exception) -> LearnerFailure:
    detail = f": {error}" if str(error) else ""
    if isinstance(error, NotImplementedError):
        detail += " (is the exercise filled in?)"
    return LearnerFailure(f"{what} raised {type(error).__name__}{detail}")


def watched(what: str, fn: Callable, *args, watch: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, the learner's code, with warnings silenced (stderr would zero
    the test cell). watch: refuse PyTorch's normalization and the autograd engine meanwhile.

    Raises LearnerFailure naming ``what`` when fn calls something forbidden (even if it then
    fails), removes the profiler, or raises.
    """
    watcher = Watcher(_forbidden_python, _forbidden_builtin) if watch else None
    result, raised = None, None
    try:
        with (
            watcher or contextlib.nullcontext(),
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
        ):
            warnings.simplefilter("ignore")
            result = fn(*args, **kwargs)
    except LearnerFailure:
        raise
    except Exception as error:  # the learner's own error, reported with what was called
        raised = error
    if watcher is not None and watcher.tampered:
        raise LearnerFailure(f"{what} changed the profiler (sys.setprofile); no points.")
    if watcher is not None and watcher.seen is not None:
        raise LearnerFailure(f"{what}: {watcher.seen}. No points for this check.")
    if raised is not None:
        raise _learner_error(what, raised)
    return result


# --- tensors in, plain data out ----------------------------------------------------------------


def layout_of(a: np.ndarray) -> str:
    """How ``a`` lies in memory: "C", "F" (transposed), "channels_last" or "strided"."""
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "F"
    if a.ndim == 4 and np.argsort(a.strides)[0] == 1:
        return "channels_last"
    return "strided"


def tensor_like(a: np.ndarray, layout: str = "C", requires_grad: bool = False) -> torch.Tensor:
    """A tensor with ``a``'s values and dtype, laid out as ``layout`` (``layout_of``) says: a
    transposed, strided or channels-last view stays non-contiguous. A private copy."""
    a = np.ascontiguousarray(a)
    if layout == "F":
        t = torch.tensor(np.ascontiguousarray(a.T)).permute(*reversed(range(a.ndim)))
    elif layout == "channels_last" and a.ndim == 4:
        t = torch.tensor(a).contiguous(memory_format=torch.channels_last)
    elif layout == "strided" and a.ndim:
        wide = torch.zeros(*a.shape[:-1], 2 * a.shape[-1], dtype=torch.from_numpy(a).dtype)
        t = wide[..., ::2]
        t.copy_(torch.from_numpy(a))
    else:
        t = torch.tensor(a)
    return t.requires_grad_(requires_grad)


def describe(value) -> dict | bool | None:
    """``value`` as plain data: a tensor as {"kind": "tensor", "data": ndarray, "dtype",
    "parameter", "requires_grad", "device"}; None and booleans as themselves; anything else as
    {"kind": its type's name}."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().resolve_conj().resolve_neg()
        if data.dtype in (torch.bfloat16, torch.complex32):
            data = data.double()
        return {
            "kind": "tensor",
            "data": data.contiguous().numpy().copy(),
            "dtype": str(value.dtype),
            "parameter": isinstance(value, torch.nn.Parameter),
            "requires_grad": bool(value.requires_grad),
            "device": value.device.type,
        }
    if value is None or type(value) is bool:
        return value
    if isinstance(value, tuple | list):
        return {"kind": type(value).__name__, "items": [describe(v) for v in value][:16]}
    return {"kind": type(value).__name__[:100]}


def _name(fn_cls) -> str:
    name = getattr(fn_cls, "__name__", None)
    return name[:100] if type(name) is str else "your Function"


# --- BatchNormFunction ----------------------------------------------------------------------


def function_facts(fn_cls) -> dict:
    """Whether ``fn_cls`` is a torch.autograd.Function subclass and whose backward it has."""
    facts = {"name": _name(fn_cls), "function": False, "own_backward": False, "repr": ""}
    facts["repr"] = repr(fn_cls)[:200]
    if isinstance(fn_cls, type) and issubclass(fn_cls, torch.autograd.Function):
        facts["function"] = True
        owner = next(k for k in fn_cls.__mro__ if "backward" in vars(k))
        facts["own_backward"] = not str(owner.__module__).startswith("torch")
    return facts


def _apply(fn_cls, x, gamma, beta, eps) -> dict:
    """``fn_cls.apply(x, gamma, beta, eps)``, watched: y, and whether y is the Function's own
    node in the graph (not autograd of other operations)."""
    what = f"{_name(fn_cls)}.apply(x, gamma, beta, eps)"
    y = watched(what, fn_cls.apply, x, gamma, beta, eps)
    own = True
    node = ""
    if isinstance(y, torch.Tensor) and torch.is_grad_enabled():
        if any(t.requires_grad for t in (x, gamma, beta)):
            own = getattr(y.grad_fn, "_forward_cls", None) is fn_cls
            node = type(y.grad_fn).__name__[:100]
    return {"y": y, "own_node": own, "node": node}


def function_forward(fn_cls, x, layout, gamma, beta, eps) -> dict:
    """The forward on float64 inputs that do not require grad: y, and whether x changed."""
    xt, before = tensor_like(x, layout), torch.tensor(np.ascontiguousarray(x))
    applied = _apply(fn_cls, xt, torch.tensor(gamma), torch.tensor(beta), eps)
    return {"y": describe(applied["y"]), "x_changed": not torch.equal(xt.detach(), before)}


def function_grad(fn_cls, x, layout, gamma, beta, eps, dy, needs, direct) -> dict:
    """The backward for the upstream gradient ``dy``: ``needs`` says which of x, gamma, beta
    require grad. direct: also call the Function's backward node itself, watched (its values:
    "direct"). "engine": the gradients of the inputs that require grad through
    torch.autograd.grad, or "engine_error"."""

    def inputs():
        return (
            tensor_like(x, layout, bool(needs[0])),
            torch.tensor(gamma, requires_grad=bool(needs[1])),
            torch.tensor(beta, requires_grad=bool(needs[2])),
        )

    name, dyt = _name(fn_cls), torch.tensor(np.ascontiguousarray(dy))
    ts = inputs()
    applied = _apply(fn_cls, *ts, eps)
    out = {"y": describe(applied["y"]), "own_node": applied["own_node"], "node": applied["node"]}
    if not isinstance(applied["y"], torch.Tensor) or not applied["own_node"]:
        return out
    if direct:
        grads = watched(f"{name}.backward(ctx, dy)", applied["y"].grad_fn.apply, dyt.clone())
        out["direct"] = describe(grads)
    ts = inputs()
    y = _apply(fn_cls, *ts, eps)["y"]
    wanted = [t for t in ts if t.requires_grad]
    what = "torch.autograd.grad through your Function"
    if not all(needs):
        what = "torch.autograd.grad with only x requiring grad"
    return {**out, **_through_engine(what, y, wanted, dyt)}


def _through_engine(what: str, y, inputs, dy) -> dict:
    """{"engine": the gradients of ``inputs`` torch.autograd.grad gives for upstream ``dy``,
    described}, or {"engine_error": why it failed}."""
    try:
        got = watched(what, torch.autograd.grad, y, inputs, dy, watch=False)
        return {"engine": [describe(g) for g in got]}
    except LearnerFailure as failure:
        return {"engine_error": str(failure)}


def function_outputs(fn_cls, points: list, layout: str, eps: float) -> list:
    """The forward's output (float64 ndarray) at each (x, gamma, beta) of ``points``, without
    autograd: what a finite difference of the learner's own forward needs, in one call."""
    out = []
    with torch.no_grad():
        for x, gamma, beta in points:
            y = watched(
                f"{_name(fn_cls)}.apply on a perturbed input",
                fn_cls.apply,
                tensor_like(x, layout),
                torch.tensor(gamma),
                torch.tensor(beta),
                eps,
                watch=False,
            )
            if not isinstance(y, torch.Tensor):
                raise LearnerFailure(f"{_name(fn_cls)}.forward returned {type(y).__name__}.")
            out.append(y.detach().cpu().double().numpy())
    return out


# --- BatchNorm2d -------------------------------------------------------------------------------


def _read(module, names) -> dict:
    """The module's attributes ``names`` (watched reads), described."""
    out = {}
    for n in names:
        value = watched(n, getattr, module, n, None if n == "training" else _ABSENT)
        out[n] = MISSING if value is _ABSENT else describe(value)
    return out


_ABSENT = object()


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


def module_new(cls, channels, options, ctor):
    """``cls(channels, **options)`` (``ctor`` says so in messages)."""
    return watched(ctor, lambda: cls(int(channels), **dict(options)))


def module_start(cls, channels, options, ctor, device, dtype, gamma, beta) -> tuple:
    """``cls(channels, **options).to(device, dtype)`` with weight and bias set to gamma and
    beta (unless None): (the module, its training flag, parameters and buffers)."""
    module = module_new(cls, channels, options, ctor)
    module = watched(f"{ctor}.to({device!r}, {_dtype(dtype)})", module.to, device, _dtype(dtype))
    if gamma is not None:
        with torch.no_grad():
            for name, values in (("weight", gamma), ("bias", beta)):
                param = watched(name, getattr, module, name)
                watched(f"{name}.copy_(...)", param.copy_, torch.tensor(values))
    return module, _read(module, ("training", "weight", "bias", *BUFFERS))


def module_step(module, action, fn_cls, device, dtype, layout, x, dy, state) -> dict:
    """One step of a scenario: "batch" (forward x, backward dy: y, the gradients and the
    buffers), "load" (load_state_dict of ``state``, ndarrays), or "train"/"eval"."""
    if action == "load":
        loaded = {k: torch.from_numpy(np.array(v)) for k, v in dict(state).items()}
        watched("load_state_dict(state)", module.load_state_dict, loaded)
        return _read(module, ("weight", "bias", *BUFFERS))
    if action in ("train", "eval"):
        watched(f"{action}()", getattr(module, action))
        return _read(module, ("training", *BUFFERS))
    if action != "batch":
        raise ValueError(f"unknown step {action!r}")
    xt = torch.tensor(np.ascontiguousarray(x), dtype=_dtype(dtype), device=device)
    if layout == "channels_last":
        xt = xt.contiguous(memory_format=torch.channels_last)
    xt.requires_grad_(True)
    for param in module.parameters():
        param.grad = None
    y = watched("forward(x)", module, xt)
    if not isinstance(y, torch.Tensor):
        raise LearnerFailure(f"forward returned {type(y).__name__}, not a tensor.")
    if fn_cls is not None and (
        bool(module.training) or not getattr(module, "track_running_stats", True)
    ):
        _require_function(y, fn_cls)
    dyt = torch.tensor(np.ascontiguousarray(dy), dtype=_dtype(dtype), device=device)
    watched("y.backward(dy)", y.backward, dyt, watch=False)
    grads = {
        "y": describe(y),
        "x.grad": describe(xt.grad),
        "weight.grad": describe(getattr(getattr(module, "weight", None), "grad", None)),
        "bias.grad": describe(getattr(getattr(module, "bias", None), "grad", None)),
    }
    return {**grads, **_read(module, BUFFERS)}


def _require_function(y: torch.Tensor, fn_cls) -> None:
    """LearnerFailure unless the graph of y contains a node of the learner's Function."""
    queue, seen = [y.grad_fn], set()
    while queue:
        node = queue.pop()
        if node is None or id(node) in seen or len(seen) > 50:
            continue
        seen.add(id(node))
        if getattr(node, "_forward_cls", None) is fn_cls:
            return
        queue += [n for n, _ in node.next_functions]
    name = _name(fn_cls)
    raise LearnerFailure(
        f"in training mode the forward must normalize through your {name} "
        f"({name}.apply(x, weight, bias, self.eps)); it was not in the graph of y."
    )


def module_double(module, ctor: str):
    """``module.double()`` (the module it returns)."""
    return watched(f"{ctor}.double()", module.double)


def module_listed(module) -> dict:
    """named_parameters(), named_buffers() and state_dict() as lists of [name, described]."""
    listed = {}
    for what, method in (
        ("parameters()", "named_parameters"),
        ("buffers()", "named_buffers"),
        ("state_dict()", "state_dict"),
    ):
        listed[what] = watched(f"{method}()", _entries, module, method)
    return listed


def _entries(module, method: str) -> list:
    result = getattr(module, method)()
    items = result.items() if method == "state_dict" else result
    return [[str(name), describe(t)] for name, t in items]


def module_eval_output(module, x, device, dtype) -> dict:
    """``module.eval()`` then forward(x) without autograd, described."""
    watched("eval()", module.eval)
    xt = torch.tensor(np.ascontiguousarray(x), dtype=_dtype(dtype), device=device)
    with torch.no_grad():
        return describe(watched("forward(x)", module, xt))


# --- lesson 11: Triton launchers and the Function built on them ---------------------------------


def interpreted() -> bool:
    """True when Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``), on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def kernel_device() -> torch.device:
    """The CPU under the interpreter, else the GPU (compiled kernels need CUDA tensors)."""
    if interpreted() or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


REDUCTIONS = frozenset(
    {"sum", "mean", "var", "std", "var_mean", "std_mean", "nansum", "nanmean", "backward", "grad"}
)
"""torch functions lesson 11's learner code may not call: its reductions belong in the
kernels, and its backward is the kernels, not autograd."""


class _RefuseReductions(torch.overrides.TorchFunctionMode):
    """Records the first forbidden torch call (``REDUCTIONS``, or a normalization) and lets
    every call through; the call fails afterwards."""

    def __init__(self):
        super().__init__()
        self.seen: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.seen is None and (name in REDUCTIONS or name.endswith("_norm")):
            self.seen = name
        return func(*args, **(kwargs or {}))


def kernels_watched(what: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, lesson 11's learner code, with warnings silenced (``watched``),
    refusing PyTorch's reductions and normalizations (``REDUCTIONS``): LearnerFailure."""
    mode = _RefuseReductions()
    with mode:
        result = watched(what, fn, *args, watch=False, **kwargs)
    if mode.seen is not None:
        raise LearnerFailure(
            f"{what} calls torch's {mode.seen}: in this lesson every sum over N, H, W is done "
            "inside a Triton kernel (tl.sum over blocks), and the backward is your kernels, "
            "not autograd. No points for this check."
        )
    return result


def guarded(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A contiguous tensor on ``kernel_device()`` holding ``array``, in the middle of a buffer of
    NaN at least one tensor long on each side: a kernel that reads past either end reads NaN."""
    size = array.size
    pad = size + 4096
    buffer = torch.full((2 * pad + size,), float("nan"), dtype=dtype, device=kernel_device())
    view = buffer[pad : pad + size].view(array.shape)
    view.copy_(torch.as_tensor(np.ascontiguousarray(array)))
    return view


def kernels_launch(fn, what: str, args: list, dtype: str, block: int) -> dict:
    """``fn(*args, block=block)``, a learner's launcher, watched (``kernels_watched``): every
    ndarray of ``args`` as a ``guarded`` tensor of ``dtype``, every number as a float. "out":
    what it returned, described; "changed": the positions of the tensors it wrote to."""
    tensors = []
    for a in args:
        if isinstance(a, np.ndarray):
            tensors.append(guarded(a, _dtype(dtype)))
        elif isinstance(a, int | float | np.floating) and type(a) is not bool:
            tensors.append(float(a))
        else:
            raise ValueError(f"a launcher argument is an ndarray or a number, not {type(a)}")
    before = {i: t.clone() for i, t in enumerate(tensors) if isinstance(t, torch.Tensor)}
    result = kernels_watched(what, fn, *tensors, block=int(block))
    changed = [i for i, t in before.items() if not torch.equal(tensors[i], t)]
    return {"out": describe(result), "changed": changed}


def _kernel_inputs(x, layout, gamma, beta, dtype, requires_grad) -> list[torch.Tensor]:
    """x laid out as ``layout`` says (``tensor_like``), gamma and beta: tensors of ``dtype`` on
    the kernels' device (``.to`` keeps x's layout)."""
    device, dt = kernel_device(), _dtype(dtype)
    arrays = ((x, layout), (gamma, "C"), (beta, "C"))
    tensors = [tensor_like(np.asarray(a), kind).to(device, dt) for a, kind in arrays]
    return [t.requires_grad_(bool(requires_grad)) for t in tensors]


def kernels_apply(fn_cls, x, layout, gamma, beta, eps, dtype, dy, engine) -> dict:
    """``fn_cls.apply(x, gamma, beta, eps)`` on tensors of ``dtype`` on the kernels' device (x
    channels-last when ``layout`` says so), watched: "y". With an upstream gradient ``dy`` the
    inputs require grad: "own_node" (y's node is fn_cls's), "node", "grads" (the Function's
    backward node called on dy, watched); engine: also "engine", the gradients of a second
    forward through torch.autograd.grad (or "engine_error")."""
    name = _name(fn_cls)
    inputs = _kernel_inputs(x, layout, gamma, beta, dtype, dy is not None)
    what = f"{name}.apply(x, gamma, beta, eps)"
    y = kernels_watched(what, fn_cls.apply, *inputs, float(eps))
    out = {"y": describe(y), "own_node": True, "node": ""}
    if dy is None or not isinstance(y, torch.Tensor):
        return out
    out["own_node"] = getattr(y.grad_fn, "_forward_cls", None) is fn_cls
    out["node"] = type(y.grad_fn).__name__[:100]
    if not out["own_node"]:
        return out
    dyt = torch.tensor(np.ascontiguousarray(dy), dtype=_dtype(dtype), device=inputs[0].device)
    grads = kernels_watched(f"{name}.backward(ctx, dy)", y.grad_fn.apply, dyt.clone())
    out["grads"] = describe(grads)
    if engine:
        inputs = _kernel_inputs(x, layout, gamma, beta, dtype, True)
        y = kernels_watched(what, fn_cls.apply, *inputs, float(eps))
        out.update(_through_engine("torch.autograd.grad through your Function", y, inputs, dyt))
    return out


def kernels_outputs(fn_cls, points: list, layout: str, eps: float, dtype: str) -> list:
    """The output of ``fn_cls.apply`` (float64 ndarray) at each (x, gamma, beta) of ``points``,
    without autograd, watched: what a finite difference of the learner's forward needs."""
    out = []
    with torch.no_grad():
        for x, gamma, beta in points:
            inputs = _kernel_inputs(x, layout, gamma, beta, dtype, False)
            what = f"{_name(fn_cls)}.apply on a perturbed input"
            y = kernels_watched(what, fn_cls.apply, *inputs, float(eps))
            if not isinstance(y, torch.Tensor):
                raise LearnerFailure(f"{_name(fn_cls)}.forward returned {type(y).__name__}.")
            out.append(y.detach().cpu().double().numpy())
    return out


CALLS: dict[str, Callable] = {
    f.__name__: f
    for f in (
        function_facts,
        function_forward,
        function_grad,
        function_outputs,
        module_new,
        module_start,
        module_step,
        module_double,
        module_listed,
        module_eval_output,
        kernels_launch,
        kernels_apply,
        kernels_outputs,
    )
}
"""What a check may ask of the learner's code; grading's kernel answers these and no other."""
