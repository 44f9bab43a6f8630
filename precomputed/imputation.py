"""Where each catalog value comes from.

Voxel size, axis by axis: the user's flag, else the file's own metadata, else
a named microscope profile, else 1 nm flagged ``default`` so that
``blockio catalog missing`` lists it for a curator. A file may state some
axes only -- the x/y pixel size of a 2-D image, TIFF resolution tags without
a z spacing -- and then those axes keep the file's values while the others
are imputed, each axis with its own provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .geometry import xyz_float
from .profiles import get_profile
from .readers.base import Sourced, SourceKind
from .units import to_nm

__all__ = ["DEFAULT_VOXEL_SIZE", "VoxelSize", "resolve_voxel_size"]

DEFAULT_VOXEL_SIZE = (1.0, 1.0, 1.0)

# the overall source of a mixed voxel size is the lowest in precedence among its axes, so a
# record with any guessed axis is listed by `catalog missing`
_PRECEDENCE = ("default", "profile", "file", "user")


@dataclass(frozen=True)
class VoxelSize(Sourced):
    """A voxel size ``(x, y, z)`` in nm with its overall provenance and each axis's own.

    ``source`` and ``detail`` summarise the three ``axes`` entries (``x``,
    ``y``, ``z`` in that order): one source when all agree, else the lowest
    in precedence (user > file > profile > default).
    """

    axes: tuple[Sourced, Sourced, Sourced]


def _clean(value: float) -> float:
    # drop float noise from unit conversions (0.008 um -> 8.000000000000002 nm)
    return round(float(value), 6)


def _names(axes: Sequence[str]) -> str:
    return ", ".join(axes)


def _file_says(from_file: Sourced, nm: tuple[float, float, float]) -> str:
    stated = [(a, v) for a, v in zip("xyz", from_file.value) if v is not None]
    if all(_clean(v) == nm["xyz".index(a)] for a, v in stated):
        return ""
    if len(stated) == 3:
        return f" (the file says {[_clean(v) for _, v in stated]} nm: {from_file.detail})"
    said = ", ".join(f"{a}={_clean(v):g}" for a, v in stated)
    return f" (the file says {said} nm: {from_file.detail})"


def _summary(axes: tuple[Sourced, Sourced, Sourced]) -> tuple[SourceKind, str]:
    groups: dict[tuple[SourceKind, str], list[str]] = {}
    for name, entry in zip("xyz", axes):
        groups.setdefault((entry.source, entry.detail), []).append(name)
    if len(groups) == 1:
        (source, detail), = groups
        return source, detail
    source = min((s for s, _ in groups), key=_PRECEDENCE.index)
    detail = "; ".join(f"{_names(names)} from {s}: {d}" for (s, d), names in groups.items())
    return source, detail


def resolve_voxel_size(
    *,
    user: tuple[float, float, float] | None,
    unit: str = "nm",
    from_file: Sourced | None,
    profile: str | None,
) -> VoxelSize:
    """The (x, y, z) voxel size in nm, with its provenance overall and per axis.

    Parameters
    ----------
    user : tuple of float or None
        ``--voxel-size`` in ``unit``; it wins on every axis.
    unit : str
        The unit of ``user``.
    from_file : Sourced or None
        The reader's voxel size: ``(x, y, z)`` in nm, ``None`` for an axis
        the file does not state.
    profile : str or None
        A microscope profile for the axes neither the user nor the file give.

    Returns
    -------
    VoxelSize
        The value, the overall source and detail, and one entry per axis.

    Raises
    ------
    InvalidOption
        An unknown unit or profile.
    """
    if user is not None:
        nm = xyz_float(_clean(to_nm(v, unit)) for v in user)
        detail = f"--voxel-size {','.join(f'{v:g}' for v in user)} --unit {unit}"
        if from_file is not None:
            detail += _file_says(from_file, nm)
        entry = Sourced(nm, "user", detail)
        return VoxelSize(nm, "user", detail, (entry, entry, entry))
    stated = tuple(from_file.value) if from_file is not None else (None, None, None)
    axes: list[Sourced] = []
    missing = [a for a, v in zip("xyz", stated) if v is None]
    prof = get_profile(profile) if profile is not None and missing else None
    for i, value in enumerate(stated):
        if value is not None and from_file is not None:
            axes.append(Sourced(_clean(value), "file", from_file.detail))
        elif prof is not None:
            detail = f"microscope profile {prof.name!r} ({prof.description}; {prof.origin})"
            axes.append(Sourced(_clean(prof.voxel_size[i]), "profile", detail))
        elif from_file is None:
            axes.append(Sourced(DEFAULT_VOXEL_SIZE[i], "default", "no voxel size in the file, no --voxel-size, no --profile; assumed 1 nm"))
        else:
            detail = f"the file states no {_names(missing)} size, no --voxel-size, no --profile; assumed 1 nm"
            axes.append(Sourced(DEFAULT_VOXEL_SIZE[i], "default", detail))
    per_axis = (axes[0], axes[1], axes[2])
    source, detail = _summary(per_axis)
    value = xyz_float(a.value for a in per_axis)
    return VoxelSize(value, source, detail, per_axis)
