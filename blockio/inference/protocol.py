"""What a model is to the runner: how it is named, loaded, described and checked.

A model is any callable ``model(block) -> array``. ``block`` is float32
``[C, Z, Y, X]``; it returns integer labels ``[Z, Y, X]`` or float scores
``[K, Z, Y, X]`` of the same spatial shape. Optional attributes:
``__version__`` and ``parameters`` (a dict, or a method returning one) go
into the layer's provenance; ``instance = True`` makes integer labels
instance ids instead of semantic classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest

__all__ = ["Model", "check_output", "load_model", "model_name", "model_parameters", "model_version"]

Model = Callable[[npt.NDArray[np.float32]], Any]


def load_model(spec: str | Model) -> Model:
    """The callable named by ``"pkg.module:callable"`` (or ``spec`` itself if callable).

    Raises
    ------
    InvalidRequest
        A malformed spec, a module that fails to import, a missing attribute or a non-callable.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise InvalidRequest(f"model must be a callable or 'pkg.module:callable', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is the user's to see
        raise InvalidRequest(f"model {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidRequest(f"model {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidRequest(f"model {spec!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def model_name(model: str | Model) -> str:
    """``module:qualname`` of a model, as recorded in the layer's provenance."""
    if isinstance(model, str):
        return model
    target = model if hasattr(model, "__qualname__") else type(model)
    module = getattr(target, "__module__", None) or "?"
    name = getattr(model, "name", None) if not hasattr(model, "__qualname__") else None
    return f"{module}:{name or target.__qualname__}"


def model_parameters(model: Model) -> Any:
    """The model's ``parameters`` (called when it is a method), or None."""
    params = getattr(model, "parameters", None)
    return params() if callable(params) else params


def model_version(model: Model) -> str | None:
    """The model's ``__version__`` as a string, or None."""
    version = getattr(model, "__version__", None)
    return None if version is None else str(version)


def check_output(out: Any, shape_zyx: tuple[int, ...], name: str) -> npt.NDArray[Any]:
    """The model's output as a NumPy array, if it is labels or scores of the block's spatial shape.

    Raises
    ------
    InvalidRequest
        Another shape or dtype, negative labels or non-finite scores.
    """
    arr = np.asarray(out) if not hasattr(out, "detach") else out.detach().cpu().numpy()
    if arr.dtype.kind in "iub" and arr.ndim == 3 and arr.shape == shape_zyx:
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise InvalidRequest(f"model {name!r} returned negative labels; labels must be >= 0")
        return arr
    if arr.dtype.kind == "f" and arr.ndim == 4 and arr.shape[1:] == shape_zyx and arr.shape[0] >= 1:
        if not np.all(np.isfinite(arr)):
            raise InvalidRequest(f"model {name!r} returned non-finite scores (NaN or inf)")
        return arr
    raise InvalidRequest(
        f"model {name!r} returned {arr.dtype} {list(arr.shape)} for an input block [C, Z, Y, X] of spatial shape {list(shape_zyx)}; "
        f"it must return integer labels [Z, Y, X] = {list(shape_zyx)} or float scores [K, Z, Y, X] = [K, {', '.join(map(str, shape_zyx))}]"
    )
