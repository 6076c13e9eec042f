"""The ``hpcgan`` command: one verb per stage, each a thin wrapper over one module.

No logic lives here: a verb parses its flags and calls one function. Errors a
user can fix (hpcgan.errors.HpcganError) are printed without a traceback and
the command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from hpcgan.errors import HpcganError


def _cmd_doctor(args: argparse.Namespace) -> int:
    from hpcgan import doctor

    info = doctor.report()
    print(doctor.format_report(info))
    return 0 if info["native_extension"] == "loaded" else 1


def _add_core_commands(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="show torch, the native extension's backends, threads and cluster tools",
        description="Print the torch version, whether hpcgan._C loaded and which backends "
        "(CPU, CUDA and its archs) it was built with, the torch thread count, and whether "
        "mpirun, srun, sbatch and nvcc are on PATH. Exits 1 when the extension is missing.",
    )
    p.set_defaults(func=_cmd_doctor)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from hpcgan.data.preprocess import preprocess_main

    keys = ("source", "out", "classes", "layout", "masks", "metadata", "resolution", "margin", "no_mask_policy",
            "annotations", "annotation_sensitivity", "exclude", "test_per_class", "val_fraction", "seed",
            "shard_size", "compression", "workers", "progress")
    preprocess_main({k: getattr(args, k) for k in keys}, args.config)
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from hpcgan.data.shards import info

    print(info(args.out))
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from hpcgan.data.preprocess import verify_main

    return verify_main(args.out, checksums=not args.no_checksums)


def _cmd_phantom(args: argparse.Namespace) -> int:
    from hpcgan.data.phantom import generate_phantoms

    report = generate_phantoms(args.out, args.n, seed=args.seed, size=args.size, annotation_fraction=args.annotations)
    print(f"{args.out}: {args.n} phantoms per class in the Kaggle layout, {len(report['annotated'])} with markers")
    return 0


def _add_data_commands(sub) -> None:
    """Verbs of the data stage (hpcgan.data): preprocess, data info|verify, phantom."""
    p = sub.add_parser(
        "preprocess",
        help="raw chest X-rays (Kaggle or class-folder layout) into sharded HDF5 with splits",
        description="Crop every image to its lung mask (squared, with a margin), resize, drop images with "
        "burnt-in annotations, split into train/val/test and write OUT/manifest.json and "
        "OUT/<split>/shard-NNNNN.h5. Runs with worker processes, and over MPI ranks when started "
        "with mpirun/srun. A re-run resumes: complete shards with matching checksums are kept.",
    )
    p.add_argument("source", nargs="?", default=None, help="dataset root that holds the class folders "
                   "(e.g. COVID-19_Radiography_Dataset)")
    p.add_argument("out", nargs="?", default=None, help="output folder for manifest.json and the shards")
    p.add_argument("--config", default=None, help="YAML file with any of these settings (flags override it)")
    p.add_argument("--classes", default=None, help="comma-separated class folders, in label order "
                   "(default COVID,Normal; labels are 0, 1, ... in this order)")
    p.add_argument("--layout", default=None, choices=("auto", "kaggle", "flat", "plain"),
                   help="kaggle: <Class>/images + <Class>/masks; flat: <Class>/*.png; plain: class folders "
                   "with an optional --masks folder; auto (default) picks kaggle when images/ folders exist")
    p.add_argument("--masks", default=None, help="mask folder parallel to the class folders "
                   "(MASKS/<Class>/<stem>.png or MASKS/<stem>.png), for the flat/plain layouts")
    p.add_argument("--metadata", default=None, help="CSV with image_id (or stem) and patient_id columns: "
                   "splits keep each patient in one split")
    p.add_argument("--resolution", type=int, default=None, help="output side in pixels (default 256)")
    p.add_argument("--margin", type=float, default=None, help="margin around the lung box, as a fraction "
                   "of its size on each side (default 0.05)")
    p.add_argument("--no-mask-policy", dest="no_mask_policy", default=None, choices=("center", "skip", "error"),
                   help="images without a mask: centre square crop (default), exclude, or stop the run")
    p.add_argument("--annotations", default=None, choices=("exclude", "keep", "off"),
                   help="images the annotation detector flags: exclude (default), keep with a flag, "
                   "or off (do not run the detector)")
    p.add_argument("--annotation-sensitivity", dest="annotation_sensitivity", type=float, default=None,
                   help="scales the detector's contrast thresholds: >1 flags more, <1 fewer (default 1.0)")
    p.add_argument("--exclude", default=None, help="file of image stems to exclude, one per line (# comments)")
    p.add_argument("--test-per-class", dest="test_per_class", type=int, default=None,
                   help="held-out test images per class (default 200)")
    p.add_argument("--val-fraction", dest="val_fraction", type=float, default=None,
                   help="fraction of the non-test images used for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the splits (default 0)")
    p.add_argument("--shard-size", dest="shard_size", type=int, default=None,
                   help="most images per shard file (default 1024)")
    p.add_argument("--compression", default=None, choices=("none", "lzf", "gzip"),
                   help="HDF5 compression of the images (default lzf)")
    p.add_argument("--workers", type=int, default=None, help="worker processes per rank "
                   "(default 0 = this node's cores divided by the ranks on the node)")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                   help="no progress bar (it is only ever shown on rank 0)")
    p.set_defaults(func=_cmd_preprocess)

    d = sub.add_parser("data", help="inspect preprocessed shards: info, verify",
                       description="Inspect the output of `hpcgan preprocess`.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    di = dsub.add_parser("info", help="print classes and image counts per split",
                         description="Print the settings, classes, counts per split and class, and exclusions.")
    di.add_argument("out", help="a preprocessing output folder (holds manifest.json)")
    di.set_defaults(func=_cmd_data_info)
    dv = dsub.add_parser("verify", help="re-check every shard's checksum and shapes; exit 1 on a mismatch",
                         description="Re-check every shard listed in the manifest: sha256, dataset shapes, "
                         "dtypes, labels and counts. Exits 1 when anything does not match.")
    dv.add_argument("out", help="a preprocessing output folder (holds manifest.json)")
    dv.add_argument("--no-checksums", action="store_true", help="skip the sha256 check (shapes and counts only)")
    dv.set_defaults(func=_cmd_data_verify)

    ph = sub.add_parser("phantom", help="write procedural chest-X-ray-like phantoms in the Kaggle layout",
                        description="Write N phantoms per class (Clear, Opacity) as OUT/<Class>/images/*.png "
                        "with 256x256 lung masks in OUT/<Class>/masks/, for demos and tests.")
    ph.add_argument("out", help="output folder (the dataset root for `hpcgan preprocess`)")
    ph.add_argument("--n", type=int, default=100, help="phantoms per class (default 100)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ph.add_argument("--size", type=int, default=299, help="image side in pixels (default 299, as Kaggle)")
    ph.add_argument("--annotations", type=float, default=0.0,
                    help="fraction of images with a burnt-in side marker (default 0)")
    ph.set_defaults(func=_cmd_phantom)


def _add_gan_commands(sub) -> None:
    """Verbs of the GAN stage (hpcgan.gan): train-gan, generate."""


def _add_metrics_commands(sub) -> None:
    """Verbs of the metrics stage (hpcgan.metrics): metrics."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcgan",
        description="GAN augmentation experiments for chest X-rays, from a laptop to a SLURM cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_core_commands(sub)
    _add_data_commands(sub)
    _add_gan_commands(sub)
    _add_metrics_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HpcganError as exc:
        print(f"hpcgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
