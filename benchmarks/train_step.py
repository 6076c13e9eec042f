"""Time StyleGAN2-ADA training steps on the native ops against the reference ops.

One training step is what the StyleGAN2-ADA loop runs per batch: the G phases
(Gmain, plus Greg every ``g_reg_interval`` steps) and the D phases (Dmain, plus
Dreg every ``d_reg_interval`` steps), each followed by an Adam step, with the
ADA pipe in front of D. The same networks (same weights) run once with
``impl="native"`` and once with ``impl="ref"``; a run covers a whole number of
D-regularisation periods (16 steps by default) so the lazy regularisers weigh in
at their real frequency. Reported: sec/kimg (seconds per thousand real images
shown to D), the speedup of native over ref, and peak memory (CUDA: max
allocated per run; CPU: the process's peak RSS so far, which only grows).

    python benchmarks/train_step.py                      # 32 px tiny and 64 px, batch 8
    python benchmarks/train_step.py --res 32 --steps 16 --json out.json
    python benchmarks/train_step.py --res 128 --channel-base 4096 --channel-max 128

On a shared or oversubscribed node pin the threads (``--threads 1``): busy-waiting
OpenMP threads competing with other jobs make 2-thread timings swing by 10-100x.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hpcgan.gan import AugmentPipe, Discriminator, Generator, StyleGAN2Loss, lazy_regularization_adam, set_impl  # noqa: E402


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_training(G, D, impl, args, device) -> dict:
    G, D = set_impl(copy.deepcopy(G), impl), set_impl(copy.deepcopy(D), impl)
    loss = StyleGAN2Loss(G, D, AugmentPipe(p=args.p).to(device), r1_gamma=args.gamma,
                         g_reg_interval=args.g_reg_interval, d_reg_interval=args.d_reg_interval)
    g_lr, g_betas = lazy_regularization_adam(0.0025, (0.0, 0.99), args.g_reg_interval)
    d_lr, d_betas = lazy_regularization_adam(0.0025, (0.0, 0.99), args.d_reg_interval)
    opt = {"G": torch.optim.Adam(G.parameters(), lr=g_lr, betas=g_betas),
           "D": torch.optim.Adam(D.parameters(), lr=d_lr, betas=d_betas)}
    gen = torch.Generator(device="cpu").manual_seed(0)
    B, R = args.batch, G.img_resolution
    c_dim = G.c_dim

    def batch():
        real = (torch.rand(B, 1, R, R, generator=gen) * 2 - 1).to(device)
        z = torch.randn(B, G.z_dim, generator=gen).to(device)
        c = torch.nn.functional.one_hot(torch.randint(c_dim, (B,), generator=gen), c_dim).float().to(device) if c_dim else None
        return real, c, z, c

    def step(i):
        real, c, z, gc = batch()
        for phase in loss.phases_for_step(i):
            o = opt[phase[0]]
            o.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, real, c, z, gc)
            o.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    return {"impl": impl, "steps": args.steps, "seconds": dt, "sec_per_kimg": dt / (args.steps * B) * 1000,
            "peak_mem_mb": _peak_mem_mb(device)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[32, 64], help="resolutions to time")
    ap.add_argument("--channel-base", type=int, default=1024)
    ap.add_argument("--channel-max", type=int, default=64)
    ap.add_argument("--z-dim", type=int, default=64, help="z and w size")
    ap.add_argument("--mapping-layers", type=int, default=2)
    ap.add_argument("--c-dim", type=int, default=2, help="classes (0: unconditional)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16, help="timed steps (a multiple of --d-reg-interval is fair)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--g-reg-interval", type=int, default=4)
    ap.add_argument("--d-reg-interval", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=1.0, help="R1 weight")
    ap.add_argument("--p", type=float, default=0.2, help="ADA probability (fixed)")
    ap.add_argument("--impls", nargs="+", default=["native", "ref"], choices=["native", "ref", "auto"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rows = []
    for res in args.res:
        torch.manual_seed(0)
        kw = dict(img_resolution=res, channel_base=args.channel_base, channel_max=args.channel_max)
        G = Generator(z_dim=args.z_dim, c_dim=args.c_dim, w_dim=args.z_dim, mapping_layers=args.mapping_layers, **kw).to(device)
        D = Discriminator(c_dim=args.c_dim, mapping_layers=args.mapping_layers, **kw).to(device)
        times = {impl: time_training(G, D, impl, args, device) for impl in args.impls}
        for impl, t in times.items():
            row = {"res": res, "batch": args.batch, "params_G": sum(p.numel() for p in G.parameters()),
                   "params_D": sum(p.numel() for p in D.parameters()), **t}
            if "ref" in times and impl != "ref":
                row["speedup_vs_ref"] = times["ref"]["sec_per_kimg"] / t["sec_per_kimg"]
            rows.append(row)

    mem = "peak MiB (CUDA alloc)" if device.type == "cuda" else "peak RSS MiB (cumulative)"
    print(f"StyleGAN2-ADA training step, {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads), batch {args.batch}, channel_base {args.channel_base}, "
          f"channel_max {args.channel_max}, {args.steps} steps (lazy G reg every {args.g_reg_interval}, "
          f"D reg every {args.d_reg_interval})\n")
    print(f"| res | impl | sec/kimg | speedup vs ref | {mem} |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        sp = f"{r['speedup_vs_ref']:.2f}x" if "speedup_vs_ref" in r else "-"
        print(f"| {r['res']} | {r['impl']} | {r['sec_per_kimg']:.1f} | {sp} | {r['peak_mem_mb']:.0f} |")
    if args.json:
        meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "args": vars(args)}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
