"""Classifier training throughput (images/s) with and without mixed precision, in the same run.

One training step is what ``hpcgan classify`` runs per batch (:mod:`hpcgan.classify.train`):
the forward pass and the cross-entropy (InceptionV3: + 0.4 x the auxiliary head) under
``torch.autocast`` of the ``--amp`` dtype, the backward pass through a GradScaler (on for
fp16 only), one Adam step. Inputs are random one-channel images of the model's size
(the data pipeline is not timed: ``benchmarks/data.py`` does that).

Variants are ``AMP/LAYOUT``: each ``--amp`` (off, bf16, fp16) times each ``--layout``
(contiguous, channels_last), each with its own copy of the same initial weights. They
are timed interleaved, in ABBA order over ``--rounds`` (A B C, C B A, ...), so a change
in the load of a shared machine hits all alike. Reported: the median images/s of each
variant and, against ``off/contiguous``, the ratio of medians with the min-max of the
per-round ratios.

    python benchmarks/classify_step.py                                     # CPU: small_cnn@64, efficientnet_b0@128
    python benchmarks/classify_step.py --case efficientnet_b0@224 inception_v3@299 --device cuda --amp off fp16 bf16
    python benchmarks/classify_step.py --threads 1 --json benchmarks/results/classify-step-cpu.json

On a shared node pin the threads (``--threads 1``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys

import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from hpcgan.atomic import atomic_write_text  # noqa: E402
from hpcgan.bench.timing import timed_steps  # noqa: E402
from hpcgan.classify.models import build_model  # noqa: E402
from hpcgan.classify.train import _loss, autocast  # noqa: E402

LAYOUTS = ("contiguous", "channels_last")


class Stepper:
    """One variant's model, optimiser and scaler; ``run(n)`` returns images/s over n steps."""

    def __init__(self, model: torch.nn.Module, amp: str, layout: str, batch: int, size: int, classes: int, device):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        self.model = copy.deepcopy(model).to(device, memory_format=fmt).train()
        self.amp, self.fmt, self.device, self.batch = amp, fmt, device, batch
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.crit = torch.nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 1, size, size, generator=g).to(device).contiguous(memory_format=fmt)
        self.y = torch.randint(classes, (batch,), generator=g).to(device)
        self.skipped = 0  # fp16 steps the scaler skipped (overflow)

    def step(self) -> None:
        with autocast(self.amp, self.device):
            loss, _ = _loss(self.model(self.x), self.y, self.crit)
        self.opt.zero_grad(set_to_none=True)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
            self.skipped += 1

    def run(self, n: int) -> float:
        return n * self.batch / timed_steps(self.step, n, self.device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", nargs="+", default=["small_cnn@64", "efficientnet_b0@128"],
                    help="MODEL@SIZE cases (models: small_cnn, efficientnet_b0, inception_v3; inception_v3 >= 75 px)")
    ap.add_argument("--amp", nargs="+", default=None, choices=("off", "bf16", "fp16"),
                    help="autocast dtypes to time (default: off bf16 on CPU, off fp16 bf16 on CUDA)")
    ap.add_argument("--layout", nargs="+", default=list(LAYOUTS), choices=LAYOUTS,
                    help="memory layouts to time (default both)")
    ap.add_argument("--batch", type=int, default=16, help="images per step (default 16)")
    ap.add_argument("--classes", type=int, default=2, help="output classes (default 2)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per round (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved ABBA rounds (default 2)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amps = args.amp or (["off", "fp16", "bf16"] if device.type == "cuda" else ["off", "bf16"])
    names = [f"{a}/{lay}" for a in amps for lay in args.layout]
    base = names[0]

    rows = []
    for case in args.case:
        model_name, _, size = case.partition("@")
        size = int(size) if size else 64
        torch.manual_seed(0)
        model, _ = build_model(model_name, args.classes, size, "no")
        st = {n: Stepper(model, *n.split("/"), args.batch, size, args.classes, device) for n in names}
        for s in st.values():
            for _ in range(args.warmup):
                s.step()
        ips: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                ips[n].append(st[n].run(args.steps))
            print(f"  {case} round {r}: " + "  ".join(f"{n} {ips[n][-1]:.1f}" for n in names) + " images/s",
                  file=sys.stderr, flush=True)
        med = {n: statistics.median(v) for n, v in ips.items()}
        ratios = {}
        for n in names[1:]:
            per_round = [a / b for a, b in zip(ips[n], ips[base])]
            ratios[n] = {"ratio": med[n] / med[base], "min": min(per_round), "max": max(per_round)}
        rows.append({"case": case, "model": model_name, "image_size": size, "batch": args.batch,
                     "params": sum(p.numel() for p in model.parameters()), "images_per_s": med, "rounds": ips,
                     "vs": base, "ratios": ratios, "fp16_skipped_steps": {n: st[n].skipped for n in names}})

    print(f"Classifier training step (forward + loss under autocast, backward, Adam), {device} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), batch {args.batch}, "
          f"{args.rounds} interleaved rounds of {args.steps} steps\n")
    print(f"| case | variant (amp/layout) | images/s | vs {base} (min-max) |")
    print("| --- | --- | ---: | --- |")
    for r in rows:
        for n in names:
            q = r["ratios"].get(n)
            rel = "1.00x" if q is None else f"{q['ratio']:.2f}x ({q['min']:.2f}-{q['max']:.2f})"
            print(f"| {r['case']} | {n} | {r['images_per_s'][n]:.1f} | {rel} |")
    if args.json:
        meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "load_avg_at_end": os.getloadavg(), "args": vars(args),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
        atomic_write_text(args.json, json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
