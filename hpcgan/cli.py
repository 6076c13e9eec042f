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


def _add_data_commands(sub) -> None:
    """Verbs of the data stage (hpcgan.data): preprocess, data info|verify, phantom."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcgan",
        description="GAN augmentation experiments for chest X-rays, from a laptop to a SLURM cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_core_commands(sub)
    _add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HpcganError as exc:
        print(f"hpcgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
