"""``blockio ingest``: a raw dataset -> OME-Zarr + precomputed + a catalog record."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of, xyz

__all__ = ["add_parser", "run"]

FORMATS = ("tiff-stack", "tiff", "hdf5", "npy", "zarr")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ingest`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "ingest",
        help="raw dataset -> OME-Zarr + precomputed + catalog record",
        description="Ingest a TIFF stack (folder or glob), a multi-page/OME/ImageJ TIFF, HDF5, .npy or Zarr/OME-Zarr "
        "into both stores with a full pyramid and statistics. The root is created when missing.",
    )
    p.add_argument("source", nargs="+", help="file, folder or glob (quote globs); several files form a TIFF stack")
    p.add_argument("--id", required=True, dest="dataset_id", help="dataset id, [A-Za-z0-9._-]")
    add_root(p)
    p.add_argument("--voxel-size", type=xyz(float), help="x,y,z voxel size (overrides the file's metadata)")
    p.add_argument("--unit", default="nm", help="unit of --voxel-size: nm, um, mm, angstrom, ... (default nm)")
    p.add_argument("--profile", help="microscope profile for values the file does not state (see 'blockio catalog profiles')")
    p.add_argument("--axes", help="axis order of the source when its metadata does not say, e.g. zyx, czyx, zcyx, tzyx")
    p.add_argument("--dataset-key", help="dataset inside an HDF5 file or array inside a Zarr group")
    p.add_argument("--format", choices=FORMATS, help="force a reader instead of detecting it")
    p.add_argument("--series", type=int, metavar="N", help="image series N (from 0) of a multi-series TIFF / OME-TIFF (default: the first)")
    p.add_argument("--timepoint", type=int, metavar="T", help="timepoint T (from 0) of a source with a time axis (default: the first)")
    p.add_argument("--cast", metavar="DTYPE", help="convert to DTYPE as read (e.g. uint8, float32: for bool or float64 sources); a value that does not fit stops the ingest")
    p.add_argument("--drop-origin", action="store_true", help="ingest an OME-Zarr image whose level 0 is translated, ignoring the translation (recorded in the provenance)")
    p.add_argument("--chunk-size", type=xyz(int), help="x,y,z chunk size of both stores (default 64,64,64)")
    p.add_argument("--compress", choices=["none", "gzip"], default="none", help="precomputed chunk compression (default none: fastest)")
    p.add_argument("--shard", action="store_true", help="store the precomputed layer as sharded scales: far fewer files (for large layers); the OME-Zarr copy is the same")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    p.add_argument("--workers", type=int, help="local Dask workers (default: CPU count)")
    p.add_argument("--scheduler", help="threads (default), processes, sync, or tcp://HOST:PORT of a dask.distributed scheduler")
    p.add_argument("--task-mib", type=int, default=64, help="upper bound on one task's input box in MiB (default 64): bounds memory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Ingest the source; prints one line about the new record and returns the exit status."""
    from precomputed.ingest import IngestOptions, ingest

    options = IngestOptions(
        voxel_size=args.voxel_size,
        unit=args.unit,
        profile=args.profile,
        axes=args.axes,
        dataset_key=args.dataset_key,
        format=args.format,
        series=args.series,
        timepoint=args.timepoint,
        cast=args.cast,
        drop_origin=args.drop_origin,
        chunk_size=args.chunk_size,
        compress=args.compress,
        shard=args.shard,
        overwrite=args.overwrite,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.quiet else None,
        task_bytes=args.task_mib << 20,
        command="blockio " + shlex.join(argv),
    )
    source = args.source if len(args.source) > 1 else args.source[0]
    record = ingest(source, root_of(args), args.dataset_id, options)
    vs = record["provenance"]["voxel_size"]
    print(
        f"ingested {record['id']}: shape (x, y, z) {record['shape']}, {record['channels']} channel(s), {record['dtype']}, "
        f"voxel size {record['voxel_size']} nm ({vs['source']}), {len(record['mips'])} mips"
    )
    return 0
