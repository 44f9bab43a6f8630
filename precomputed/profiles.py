"""Microscope profiles: instrument defaults used when a file does not say.

The table ships as ``precomputed/profiles/microscopes.json``; a user file of
the same shape named by ``BLOCKIO_PROFILES`` (or given as ``extra``) adds
profiles or replaces shipped ones of the same name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InvalidOption
from .geometry import xyz_float
from .units import to_nm

__all__ = ["Profile", "load_profiles", "get_profile"]

ENV_VAR = "BLOCKIO_PROFILES"


@dataclass(frozen=True)
class Profile:
    """One instrument's defaults; ``voxel_size`` is (x, y, z) in nm."""

    name: str
    description: str
    voxel_size: tuple[float, float, float]
    origin: str  # "shipped" or the user file's path


def _parse(table: Any, origin: str) -> dict[str, Profile]:
    if not isinstance(table, dict) or not isinstance(table.get("profiles"), dict):
        raise InvalidOption(f"profile table {origin}: expected an object with a 'profiles' object")
    out = {}
    for name, entry in table["profiles"].items():
        try:
            unit = entry.get("unit", "nm")
            size = entry["voxel_size"]
            if len(size) != 3:
                raise ValueError("voxel_size needs 3 values")
            nm = xyz_float(to_nm(float(v), unit) for v in size)
            if not all(v > 0 for v in nm):
                raise ValueError("voxel sizes must be positive")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidOption(f"profile {name!r} in {origin}: {exc}") from exc
        out[name] = Profile(name, str(entry.get("description", "")), nm, origin)
    return out


def load_profiles(extra: str | os.PathLike[str] | None = None) -> dict[str, Profile]:
    """Shipped profiles, then the user's file (``extra`` or ``$BLOCKIO_PROFILES``) on top."""
    shipped = json.loads(resources.files("precomputed").joinpath("profiles/microscopes.json").read_text())
    profiles = _parse(shipped, "shipped")
    user = extra or os.environ.get(ENV_VAR)
    if user:
        path = Path(user)
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InvalidOption(f"profile file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise InvalidOption(f"profile file {path}: not valid JSON at line {exc.lineno}: {exc.msg}") from exc
        profiles.update(_parse(table, str(path)))
    return profiles


def get_profile(name: str, extra: str | os.PathLike[str] | None = None) -> Profile:
    """One profile by name; an unknown name lists the known ones."""
    profiles = load_profiles(extra)
    if name not in profiles:
        raise InvalidOption(f"unknown microscope profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]
