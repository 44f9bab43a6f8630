"""``blockio demo``: the whole product on data it makes itself.

1. A synthetic serial-section EM volume with ground-truth cells
   (:mod:`precomputed.synthetic`), written as a TIFF stack whose tags carry
   the voxel size, so ingest reads it from the files.
2. Ingest as dataset ``demo``.
3. The ground truth as segmentation layer ``truth``; the classical
   membrane + watershed model (no downloads) run blockwise as layer ``pred``,
   and with ``--train`` a tiny 3-D CNN trained for about a minute as ``cnn``;
   each evaluated against the truth (adapted Rand error, VI).
4. The review page on localhost, with the overlay of raw | raw + prediction.

The port is checked before any of this, so a busy one costs nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of, xyz

__all__ = ["DEMO_ID", "add_parser", "run", "run_demo"]

log = logging.getLogger(__name__)
DEMO_ID = "demo"
DEMO_VOXEL_SIZE = (8.0, 8.0, 40.0)
DEMO_HOST = "127.0.0.1"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo`` on the subcommand table ``sub``."""
    p = sub.add_parser(
        "demo",
        help="synthetic data, ingest, truth + prediction layers, evaluation, review page",
        description="Make a synthetic EM-like volume with ground-truth cells, write it as a TIFF stack with resolution tags "
        f"and ingest it as dataset '{DEMO_ID}'; write the ground truth as layer 'truth' and a classical membrane + watershed "
        "model's prediction as layer 'pred' (both with meshes), evaluate the prediction (adapted Rand error, VI), then "
        "serve the review page. --train also trains a tiny 3-D CNN (layer 'cnn'). The root is created when missing.",
    )
    add_root(p)
    p.add_argument("--shape", type=xyz(int), default=(512, 512, 128), help="x,y,z size (default 512,512,128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic volume (default 0)")
    p.add_argument("--no-serve", action="store_true", help="exit after the evaluation instead of serving the review page")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--train", action="store_true", help="also train a tiny 3-D CNN (about a minute, needs torch) and evaluate it as layer 'cnn'")
    p.add_argument("--port", type=int, default=8000, help="port of the review page (default 8000); checked before any work")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``blockio demo``: returns the exit status."""
    return run_demo(root=root_of(args), shape=args.shape, seed=args.seed, serve=not args.no_serve, progress=False if args.quiet else None, train=args.train, port=args.port)


def run_demo(*, root: str, shape: tuple[int, int, int] = (512, 512, 128), seed: int = 0, serve: bool = True, progress: bool | None = None, train: bool = False, port: int = 8000) -> int:
    """Make the demo data, ingest it, write and evaluate its layers, serve them; returns the exit status.

    Parameters
    ----------
    root
        The store root, created when missing.
    shape
        (x, y, z) size of the synthetic volume.
    seed
        Seed of the synthetic volume.
    serve
        Serve the review page at the end (on 127.0.0.1:``port``).
    progress
        Progress bars (default: when stdout is a terminal).
    train
        Also train a tiny 3-D CNN (needs torch) and write its layer ``cnn``.
    port
        Port of the review page; a busy one is refused before any work.
    """
    if serve and not _port_free(port, root):
        return 1
    import numpy as np

    from precomputed.ingest import IngestOptions, ingest, local_root
    from precomputed.synthetic import make_em_volume, write_tiff_stack

    root_path = local_root(root)
    sources = root_path / "sources" / DEMO_ID
    t0 = time.monotonic()
    print(f"making a synthetic EM volume, shape (x, y, z) {list(shape)}, voxel size {list(DEMO_VOXEL_SIZE)} nm ...", flush=True)
    volume = make_em_volume(shape, voxel_size=DEMO_VOXEL_SIZE, seed=seed)
    if sources.exists():
        shutil.rmtree(sources)
    stack = sources / "tiff"
    write_tiff_stack(stack, volume.image, DEMO_VOXEL_SIZE)
    np.save(sources / "labels.npy", volume.labels)
    print(f"  wrote {volume.image.shape[0]} TIFF slices to {stack} ({time.monotonic() - t0:.1f} s)", flush=True)
    t1 = time.monotonic()
    record = ingest(str(stack), root_path, DEMO_ID, IngestOptions(overwrite=True, progress=progress, command="blockio demo"))
    mb = record["source"]["bytes"] / 1e6
    dt = time.monotonic() - t1
    print(f"  ingested '{DEMO_ID}': {len(record['mips'])} mips, voxel size {record['voxel_size']} nm "
          f"(from {record['provenance']['voxel_size']['source']}), {mb:.0f} MB in {dt:.1f} s ({mb / dt:.0f} MB/s)", flush=True)
    print(f"  OME-Zarr:    {root_path / record['stores']['zarr']}")
    print(f"  precomputed: {root_path / record['stores']['precomputed']}")
    print(f"  catalog:     {root_path / 'catalog.json'}   (blockio catalog show {DEMO_ID} --root {root})")
    from blockio.inference.evaluate import evaluate
    from blockio.inference.run import run_inference
    from precomputed.segmentation import write_segmentation

    t2 = time.monotonic()
    write_segmentation(root_path, DEMO_ID, "truth", volume.labels, provenance={"source": "precomputed.synthetic.make_em_volume", "seed": seed}, overwrite=True)
    print(f"  ground truth: layer 'truth', {int(volume.labels.max())} cells ({time.monotonic() - t2:.1f} s)", flush=True)
    models: list[tuple[str, object]] = [("pred", "blockio.inference.models:membrane_watershed")]
    if train:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("  --train needs torch (pip install torch==2.13.0): skipped")
        else:
            from blockio.inference.models import train_tiny_unet

            t3 = time.monotonic()
            cnn = train_tiny_unet(root_path, DEMO_ID, sources / "labels.npy", seconds=60)
            print(f"  trained a tiny 3-D U-Net: {cnn.steps} steps in {time.monotonic() - t3:.0f} s", flush=True)
            models.append(("cnn", cnn))
    for name, model in models:
        t3 = time.monotonic()
        layer = run_inference(root_path, DEMO_ID, model, name, overwrite=True, progress=progress, command="blockio demo")  # type: ignore[arg-type]
        m = evaluate(root_path, DEMO_ID, name, "truth")
        print(f"  layer '{name}' ({layer['provenance']['model']}): {layer['segments']} segments in {time.monotonic() - t3:.1f} s; "
              f"adapted Rand error {m['adapted_rand_error']:.3f}, VI split {m['vi_split']:.3f} + merge {m['vi_merge']:.3f} bits", flush=True)
    demo_embeddings(str(root_path), progress=progress, train=train)
    if not serve:
        return 0
    if not _port_free(port, root):  # taken while the demo worked: print no URL that belongs to another program
        return 1
    from werkzeug.serving import run_simple

    from blockio.serving import create_app

    app = create_app({"BLOCKIO_ROOT": str(root_path)})
    base = f"http://{DEMO_HOST}:{port}"
    token = demo_reviewer(str(root_path))
    print(f"review page: {base}/   overlay: {base}/view/{DEMO_ID}?layout=overlay&pred=pred   (Ctrl-C to stop)", flush=True)
    print("  find similar cells there: 'at the cursor' under the viewer; the overview layer 'cells-pca' colours the cells by their embeddings", flush=True)
    if token is not None:
        print(f"  verdicts need a signed-in reviewer: sign in at {base}/signin with the token of user '{DEMO_REVIEWER}' (shown only now):", flush=True)
        print(f"  {token}", flush=True)
    try:
        run_simple(DEMO_HOST, port, app, threaded=True, use_reloader=False)
    except OSError as exc:  # taken between the check and the bind
        print(f"blockio: error: cannot serve on port {port}: {exc.strerror or exc}; rerun with --port N, or `blockio serve --root {root}`", file=sys.stderr)
        return 1
    return 0


DEMO_REVIEWER = "demo-reviewer"
DEMO_CELL = (16, 16, 4)


def demo_embeddings(root: str, *, progress: bool | None = None, train: bool = False) -> list[str]:
    """The demo's embedding sets; returns their names.

    ``cells``: the classical feature model per cell of :data:`DEMO_CELL` voxels, with its PCA
    overview layer ``cells-pca``; ``pred-segments``: the same model per segment of ``pred``;
    with ``train`` (and torch), ``encoder``: the self-supervised encoder trained on the
    volume (about 45 s), per cell, with ``encoder-pca``.
    """
    from blockio.embeddings.overview import overview_name, write_overview
    from blockio.embeddings.run import run_embedding

    runs: list[tuple[str, object, dict[str, object]]] = [
        ("cells", "blockio.embeddings.models:multiscale_features", {"cell": DEMO_CELL}),
        ("pred-segments", "blockio.embeddings.models:multiscale_features", {"segments": "pred"}),
    ]
    if train:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print("  the encoder needs torch (pip install torch==2.13.0): skipped")
        else:
            from blockio.embeddings.encoder import train_encoder

            t0 = time.monotonic()
            encoder = train_encoder(root, DEMO_ID, cell=DEMO_CELL, seconds=45)
            print(f"  trained the self-supervised encoder: {encoder.steps} steps in {time.monotonic() - t0:.0f} s, "
                  f"contrastive loss {encoder.losses[0]:.2f} -> {encoder.losses[-1]:.2f}", flush=True)
            runs.append(("encoder", encoder, {"cell": DEMO_CELL}))
    for name, model, options in runs:
        t0 = time.monotonic()
        entry = run_embedding(root, DEMO_ID, model, name, overwrite=True, progress=progress, command="blockio demo", **options)  # type: ignore[arg-type]
        overview = ""
        if entry["granularity"] == "cell":
            write_overview(root, DEMO_ID, name)
            overview = f", overview layer '{overview_name(name)}'"
        print(f"  embedding set '{name}': {entry['count']} {entry['granularity']} vectors of {entry['dimension']}{overview} "
              f"({time.monotonic() - t0:.1f} s; blockio similar {DEMO_ID} {name} --position 256,256,64 --root {root})", flush=True)
    return [name for name, _, _ in runs]


def demo_reviewer(root: str) -> str | None:
    """Add the demo's reviewer on first run and return its token (None when the root has one already)."""
    from blockio.config import Settings
    from blockio.database import open_database
    from blockio.users import Users

    users = Users(open_database(root=root, url=Settings.from_env().database_url))
    if any(u.name == DEMO_REVIEWER for u in users.list()):
        return None  # its token was shown when it was made; `blockio users add` makes another
    return users.add(DEMO_REVIEWER, "reviewer")[1]


def _port_free(port: int, root: str) -> bool:
    """True when the review page can listen on ``port``; else one error line naming a free port."""
    from blockio.cli.ports import busy_port_message

    busy = busy_port_message(DEMO_HOST, port)
    if busy is None:
        return True
    print(f"blockio: error: {busy} (or --no-serve, then `blockio serve --root {root} --port N`)", file=sys.stderr)
    return False
