"""Writing a volume as a TIFF stack whose tags carry its voxel size (the demo's raw data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidOption
from .units import parse_voxel_size

__all__ = ["write_tiff_stack"]


def write_tiff_stack(
    folder: str | os.PathLike[str],
    image: NDArray[np.uint8] | NDArray[np.uint16],
    voxel_size: tuple[float, float, float],
) -> list[Path]:
    """Write a volume as one 2-D TIFF per z section, ``z0000.tif``, ``z0001.tif``, ...

    The voxel size travels in each file's own metadata, as ImageJ writes it:
    XResolution and YResolution in pixels per micrometre, and the ImageJ
    description with ``unit=um`` and ``spacing`` (the z step in micrometres).

    Parameters
    ----------
    folder
        Folder to write into; created if missing.
    image
        ``uint8`` or ``uint16`` C-order ``[z, y, x]``.
    voxel_size
        Voxel size ``(x, y, z)`` in nanometres.

    Returns
    -------
    list of Path
        The files written, in z order.

    Raises
    ------
    FileExistsError
        If ``folder`` already holds ``.tif`` or ``.tiff`` files.
    InvalidOption
        (a ``ValueError``) for an image that is not 3-D ``uint8``/``uint16``
        or a non-positive voxel size.
    """
    import tifffile  # the generator itself does not need it

    array = np.asarray(image)
    if array.ndim != 3:
        raise InvalidOption(f"image must be 3-D [z, y, x], got shape {array.shape}")
    if array.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise InvalidOption(f"image must be uint8 or uint16, got {array.dtype}")
    x_um, y_um, z_um = (v / 1000.0 for v in parse_voxel_size(voxel_size))

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in root.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if existing:
        raise FileExistsError(
            f"{root} already holds {len(existing)} TIFF file(s) (e.g. {existing[0]}); "
            "write the stack into an empty folder"
        )
    digits = max(4, len(str(array.shape[0] - 1)))
    paths = []
    for z, section in enumerate(array):
        path = root / f"z{z:0{digits}d}.tif"
        tifffile.imwrite(
            path,
            np.ascontiguousarray(section),
            imagej=True,
            resolution=(1.0 / x_um, 1.0 / y_um),
            metadata={"spacing": z_um, "unit": "um"},
        )
        paths.append(path)
    return paths
