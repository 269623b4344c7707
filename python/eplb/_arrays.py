"""Arrays in and out: torch tensors (any device), numpy arrays and nested
lists are taken, checked (dimensions, element type, values) and turned
into the C-contiguous float64 / int32 numpy arrays libeplb reads; results
go back as the kind that came in (a tensor on the device it came from).

Every check here raises an eplb.Error subclass naming the argument and,
for a bad value, its index, before libeplb sees the data: ShapeError for
dimensions, ArgError for element types and integer arguments, CountError
for loads, MapError for expert ids.  libeplb checks again; nothing a
caller passes reaches C unchecked.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from .errors import ArgError, CountError, MapError, NoMemError, ShapeError

# What an input was, to give the results back as the same kind.
Kind = Tuple[str, Any]  # ("numpy" | "list" | "torch", torch device or None)


def _torch():
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def kind_of(x: Any) -> Kind:
    if is_tensor(x):
        return ("torch", x.device)
    if isinstance(x, np.ndarray):
        return ("numpy", None)
    return ("list", None)


def give_back(a: np.ndarray, kind: Kind) -> Any:
    """a as the kind of input `kind` describes."""
    if kind[0] == "torch":
        t = _torch()
        out = t.from_numpy(a)
        return out if kind[1].type == "cpu" else out.to(kind[1])
    if kind[0] == "list":
        return a.tolist()
    return a


def _describe(x: Any) -> str:
    return type(x).__name__


def _tensor_to_numpy(x: Any, name: str, want: str) -> np.ndarray:
    t = _torch()
    if x.is_sparse or x.layout != t.strided:
        raise ArgError("%s: a sparse tensor (layout %s); pass a dense one "
                       "(x.to_dense())" % (name, x.layout))
    if x.is_complex() or x.dtype == t.bool:
        raise ArgError("%s: tensor dtype %s is not a number type eplb takes; "
                       "use %s" % (name, x.dtype, want))
    try:
        x = x.detach()
        if x.device.type != "cpu":
            x = x.to("cpu")
        if x.is_floating_point():
            x = x.to(t.float64)
        return x.contiguous().numpy()
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
        raise ArgError("%s: the tensor could not be copied to host memory "
                       "(%s)" % (name, str(e).splitlines()[0])) from None


def _as_numpy(x: Any, name: str, want: str) -> np.ndarray:
    """x (tensor, array, nested sequence, scalar) as a numpy array of numbers."""
    if is_tensor(x):
        a = _tensor_to_numpy(x, name, want)
    elif isinstance(x, np.ndarray):
        a = x
    else:
        if isinstance(x, (str, bytes, dict, set)) or x is None:
            raise ArgError("%s: a %s is not an array; pass %s (a torch tensor, "
                           "a numpy array or nested lists)" %
                           (name, _describe(x), want))
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ShapeError("%s: not a rectangular array of numbers (%s)" %
                             (name, str(e).splitlines()[0])) from None
    if a.dtype.kind == "O":
        # Python ints too large for int64, or a mix: as floats if they are
        # numbers at all.
        for v in a.flat:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise ArgError("%s: holds %r, which is not a number" % (name, v))
        try:
            a = a.astype(np.float64)
        except (ValueError, TypeError, OverflowError) as e:
            raise ArgError("%s: holds something that is not a number (%s)" %
                           (name, str(e).splitlines()[0])) from None
    if a.dtype.kind not in "iuf":
        raise ArgError("%s: element type %s is not a number type eplb takes; "
                       "use %s" % (name, a.dtype, want))
    return a


def _check_shape(a: np.ndarray, name: str, dims: Sequence[str],
                 ranges: Sequence[Tuple[int, int]]) -> None:
    if a.ndim != len(dims):
        raise ShapeError("%s: %d dimension%s, expected %d ([%s])" %
                         (name, a.ndim, "" if a.ndim == 1 else "s", len(dims),
                          ", ".join(dims)))
    for n, d, (lo, hi) in zip(a.shape, dims, ranges):
        if not lo <= n <= hi:
            raise ShapeError("%s: shape [%s]: %s = %d is outside %d..%d" %
                             (name, ", ".join(str(s) for s in a.shape), d, n,
                              lo, hi))


def _first_bad(mask: np.ndarray) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)),
                                                  mask.shape))


def loads(x: Any, name: str, dims: Sequence[str] = ("L", "E"),
          ranges: Optional[Sequence[Tuple[int, int]]] = None) -> np.ndarray:
    """x as a C-contiguous float64 array of counts, each finite, >= 0 and
    <= 2^53 (eplb/stats.h)."""
    if ranges is None:
        ranges = [(1, _lib.MAX_LAYERS), (1, _lib.MAX_EXPERTS)][-len(dims):]
        if len(dims) > 2:
            ranges = [(1, 2**31 - 1)] * (len(dims) - 2) + list(ranges)
    a = _as_numpy(x, name, "float or integer counts")
    _check_shape(a, name, dims, ranges)
    try:
        a = np.ascontiguousarray(a, dtype=np.float64)
    except MemoryError:
        raise NoMemError("%s: out of memory converting %d values to float64" %
                         (name, a.size)) from None
    with np.errstate(invalid="ignore"):
        bad = ~((a >= 0) & (a <= _lib.MAX_COUNT))
    if bad.any():
        idx = _first_bad(bad)
        raise CountError("%s[%s] = %r: loads must be finite, >= 0 and at most "
                         "2^53" % (name, ", ".join(map(str, idx)),
                                   float(a[idx])))
    return a


def as_numbers(x: Any, name: str) -> np.ndarray:
    """x (a tensor, an array or nested lists of numbers) as a numpy array,
    any shape (the caller checks it)."""
    return _as_numpy(x, name, "numbers")


def expert_ids(x: Any, name: str, num_experts: Optional[int] = None,
               dims: Sequence[str] = ("L", "S"),
               ranges: Optional[Sequence[Tuple[int, int]]] = None
               ) -> np.ndarray:
    """x as a C-contiguous int32 array of expert ids, each in
    0..num_experts-1 (0..EPLB_MAX_EXPERTS-1 when num_experts is None)."""
    if ranges is None:
        ranges = [(1, _lib.MAX_LAYERS), (_lib.MIN_SLOTS, _lib.MAX_SLOTS)]
    a = _as_numpy(x, name, "integer expert ids (int64, like phy2log)")
    _check_shape(a, name, dims, ranges)
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            frac = ~(np.isfinite(a) & (a == np.floor(a)))
        if frac.any():
            idx = _first_bad(frac)
            raise MapError("%s[%s] = %r is not an expert id (an integer)" %
                           (name, ", ".join(map(str, idx)), float(a[idx])))
    hi = (num_experts if num_experts is not None else _lib.MAX_EXPERTS) - 1
    with np.errstate(invalid="ignore"):
        bad = (a < 0) | (a > hi)
    if bad.any():
        idx = _first_bad(bad)
        raise MapError("%s[%s] = %d: expert ids must be in 0..%d" %
                       (name, ", ".join(map(str, idx)), int(a[idx]), hi))
    return np.ascontiguousarray(a, dtype=np.int32)


def integer(v: Any, name: str, lo: int, hi: int, what: str = "") -> int:
    """v as an int in lo..hi (bool, floats and other types refused)."""
    if isinstance(v, (bool, np.bool_)) or isinstance(v, float):
        raise ArgError("%s must be an integer, not %r" % (name, v))
    try:
        i = operator.index(v)
    except TypeError:
        raise ArgError("%s must be an integer, not %s %r" %
                       (name, _describe(v), v)) from None
    if not lo <= i <= hi:
        raise ArgError("%s = %d is outside %d..%d%s" %
                       (name, i, lo, hi, (" " + what) if what else ""))
    return i


def real(v: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    """v as a float in lo..hi (lo excluded when lo_open)."""
    if isinstance(v, (bool, np.bool_)):
        raise ArgError("%s must be a number, not %r" % (name, v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ArgError("%s must be a number, not %s %r" %
                       (name, _describe(v), v)) from None
    ok = (lo < f if lo_open else lo <= f) and f <= hi and not math.isnan(f)
    if not ok:
        raise ArgError("%s = %r is outside %s%g..%g" %
                       (name, f, "(exclusive) " if lo_open else "", lo, hi))
    return f


def choice(v: Any, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in allowed:
        raise ArgError("%s = %r is not one of %s" %
                       (name, v, ", ".join(repr(a) for a in allowed)))
    return v


def layer_id_array(x: Any, num_layers: int, name: str = "layer_ids"
                   ) -> np.ndarray:
    """Layer ids: L distinct-or-not integers in 0..2^31-1, as int32."""
    a = _as_numpy(x, name, "integers")
    _check_shape(a, name, ["L"], [(num_layers, num_layers)])
    if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.floor(a))):
        raise ArgError("%s: layer ids must be integers" % name)
    if a.size and (a.min() < 0 or a.max() > _lib.INT32_MAX):
        raise ArgError("%s: layer ids must be in 0..%d" % (name, _lib.INT32_MAX))
    return np.ascontiguousarray(a, dtype=np.int32)
