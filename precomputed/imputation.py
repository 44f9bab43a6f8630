"""Where each catalog value comes from.

Voxel size: the user's flag, else the file's own metadata, else a named
microscope profile, else ``[1, 1, 1]`` nm flagged ``default`` so that
``blockio catalog missing`` lists it for a curator.
"""

from __future__ import annotations

from .profiles import get_profile
from .readers.base import Sourced
from .units import to_nm

__all__ = ["DEFAULT_VOXEL_SIZE", "resolve_voxel_size"]

DEFAULT_VOXEL_SIZE = (1.0, 1.0, 1.0)


def _clean(values: tuple[float, ...]) -> tuple[float, float, float]:
    # drop float noise from unit conversions (0.008 um -> 8.000000000000002 nm)
    return tuple(round(float(v), 6) for v in values)  # type: ignore[return-value]


def resolve_voxel_size(
    *,
    user: tuple[float, float, float] | None,
    unit: str = "nm",
    from_file: Sourced | None,
    profile: str | None,
) -> Sourced:
    """The (x, y, z) voxel size in nm, with its provenance."""
    if user is not None:
        nm = _clean(tuple(to_nm(v, unit) for v in user))
        detail = f"--voxel-size {','.join(f'{v:g}' for v in user)} --unit {unit}"
        if from_file is not None and tuple(from_file.value) != nm:
            detail += f" (the file says {list(from_file.value)} nm: {from_file.detail})"
        return Sourced(nm, "user", detail)
    if from_file is not None:
        return Sourced(_clean(tuple(from_file.value)), "file", from_file.detail)
    if profile is not None:
        prof = get_profile(profile)
        return Sourced(_clean(prof.voxel_size), "profile", f"microscope profile {prof.name!r} ({prof.description}; {prof.origin})")
    return Sourced(DEFAULT_VOXEL_SIZE, "default", "no voxel size in the file, no --voxel-size, no --profile; assumed 1 nm")
