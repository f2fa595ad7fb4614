"""discretizer.pt read safely: a restricted unpickler that builds only the seed's
KBinsDiscretizer (as an inert state holder), plain numeric numpy arrays and tensors.
Anything else is refused before it is called."""

from __future__ import annotations

import _compat_pickle
import collections
import math
import pickle
import reprlib
import types
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from tt_core.errors import CheckpointError


class FttKBinsState:
    """Inert stand-in for the seed's KBinsDiscretizer: unpickling fills __dict__ only."""


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Pickle protocol 2 (torch.save's) stores bytes as _codecs.encode(text, "latin1").
    if not isinstance(obj, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode other than str -> latin1 bytes")
    return obj.encode("latin1", errors)


# numpy dtypes a discretizer file may hold: plain numbers only. Anything else (object,
# structured, void, subarray dtypes) could make numpy read raw bytes as pointers.
SAFE_DTYPE_KINDS = "biuf"


def describe(obj: Any) -> str:
    """A short one-line description of an object from a file (messages stay one line)."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"{type(obj).__name__} {tuple(obj.shape)} {obj.dtype}"
    short = reprlib.Repr()
    short.maxstring = short.maxother = 40
    return " ".join(short.repr(obj).split())


def _safe_dtype(dtype: Any) -> np.dtype:
    """`dtype` if it is a plain numeric numpy dtype, else refused."""
    if not (
        isinstance(dtype, np.dtype)
        and dtype.kind in SAFE_DTYPE_KINDS
        and dtype.fields is None
        and dtype.subdtype is None
        and not dtype.hasobject
        and dtype == np.dtype(dtype.str)  # nothing but its type code describes it
    ):
        raise _Refused(f"numpy dtype {describe(dtype)} (only plain numeric dtypes are accepted)")
    return dtype


def _make_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """numpy.dtype(spec, ...) for a numeric type code only, e.g. 'f8' or '<f4'."""
    if not isinstance(spec, str) or len(spec) > 4:
        raise _Refused(f"numpy dtype {describe(spec)}")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise _Refused(f"numpy dtype {describe(spec)}") from None
    return _safe_dtype(dtype)


class _NdarrayType:
    """What the global numpy.ndarray resolves to: only `_reconstruct` accepts it."""


def _make_reconstruct(reconstruct):
    def make(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') + BUILD(state)
        if subtype is not _NdarrayType or shape != (0,) or dtype not in (b"b", "b"):
            raise _Refused("numpy _reconstruct with arguments numpy never pickles")
        return reconstruct(np.ndarray, (0,), b"b")

    return make


def _make_scalar(scalar):
    def make(dtype: Any, data: Any = None) -> Any:
        dtype = _safe_dtype(dtype)
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise _Refused(f"numpy scalar of {dtype} from {type(data).__name__}")
        return scalar(dtype, data)

    return make


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray  # numpy >= 2; files of numpy 1 name numpy.core
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray

    allowed: dict[tuple[str, str], Any] = {
        ("trajectory.utils.discretization", "KBinsDiscretizer"): FttKBinsState,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _make_dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_plain_tensor,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _make_reconstruct(multiarray._reconstruct)
        allowed[(mod, "scalar")] = _make_scalar(multiarray.scalar)
    # numpy >= 1.25 may pickle a dtype through its class, e.g. numpy.dtypes.Float64DType.
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            allowed[("numpy.dtypes", name)] = lambda *args, _cls=cls: _safe_dtype(_cls(*args))
    return allowed


def _rebuild_plain_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch's _rebuild_tensor_v2 for a plain tensor only: no grad, hooks or metadata."""
    if requires_grad or hooks or metadata is not None:
        raise _Refused("a tensor with autograd state, hooks or metadata")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


class _Refused(Exception):
    """Content outside what a discretizer file holds; carries a short description."""


class _RestrictedUnpickler(pickle._Unpickler):
    """Resolves only allow-listed globals, and lets BUILD (the opcode that sets an
    object's state) touch only what numpy and the seed's discretizer need, checked
    first. Everything else is refused, never imported or called.

    The pure-Python unpickler is used because BUILD must be intercepted: numpy's own
    `__setstate__` would accept a dtype with object fields and an array over raw bytes,
    which numpy then reads as pointers (a crash, or worse). Discretizer files are small.
    """

    _allowed: Optional[dict] = None
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        # Protocol-2 pickles (torch.save's) may carry Python 2 names, e.g. __builtin__.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            target = _RestrictedUnpickler._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None
        if target is FttKBinsState:  # a fresh stand-in class per file
            return type("KBinsDiscretizer", (FttKBinsState,), {})
        return target

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, FttKBinsState) and isinstance(state, dict):
            inst.__dict__.update({str(k): v for k, v in state.items()})
        elif isinstance(inst, np.dtype):
            # A dtype's state may only restate what its type code already says.
            if state != inst.__reduce__()[2]:
                raise _Refused(f"numpy dtype state {describe(state)}")
        elif isinstance(inst, np.ndarray) and inst.shape == (0,) and inst.base is None:
            _check_array_state(state)
            inst.__setstate__(state)
        else:
            raise _Refused(f"setting the state of {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build

    def _container(self, depth: int, kinds: tuple) -> None:
        """SETITEM(S)/APPEND(S)/ADDITEMS may only fill plain containers (not, say, the
        bytes an array was built over)."""
        target = self.stack[depth] if depth < 0 else self.metastack[-1][-1]
        if type(target) not in kinds:
            raise _Refused(f"adding items to {type(target).__name__}")

    def load_setitem(self) -> None:
        self._container(-3, (dict, collections.OrderedDict))
        super().load_setitem()

    def load_setitems(self) -> None:
        self._container(0, (dict, collections.OrderedDict))
        super().load_setitems()

    def load_append(self) -> None:
        self._container(-2, (list,))
        super().load_append()

    def load_appends(self) -> None:
        self._container(0, (list,))
        super().load_appends()

    def load_additems(self) -> None:
        self._container(0, (set,))
        super().load_additems()

    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.ADDITEMS[0]] = load_additems


def _check_array_state(state: Any) -> None:
    """numpy's ndarray state (version, shape, dtype, fortran, raw bytes), checked."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise _Refused("numpy array state")
    _version, shape, dtype, _fortran, data = state
    dtype = _safe_dtype(dtype)
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused(f"numpy array shape {describe(shape)}")
    if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
        raise _Refused("numpy array data that does not match its shape")


def _restricted_load(file, **kwargs) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load(pickle_module=...) needs: an Unpickler class and a load function.
_restricted_pickle = types.ModuleType("tt_core_ftt_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]


def read_ftt_discretizer(path: Path) -> dict[str, Any]:
    """The pickled KBinsDiscretizer's attributes (bin_edges, bin_centers, n_bins, ...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if not zipfile.is_zipfile(path):  # torch's legacy tar/pickle reader trusts its sizes
        raise CheckpointError(f"{path}: unreadable or corrupt (not a torch.save zip archive)")
    try:
        obj = torch.load(
            path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False
        )
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except _Refused as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle {exc} (an FTT discretizer file holds only its "
            "KBinsDiscretizer, plain numeric numpy arrays and tensors)"
        ) from None
    except Exception as exc:  # zip, pickle and torch errors all mean a damaged file
        raise CheckpointError(f"{path}: unreadable or corrupt ({type(exc).__name__})") from None
    if not isinstance(obj, FttKBinsState):
        raise CheckpointError(f"{path}: not a seed KBinsDiscretizer (found {type(obj).__name__})")
    return dict(vars(obj))
