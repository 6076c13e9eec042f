"""Time StyleGAN2-ADA training steps: native ops against reference ops, fp32 against mixed precision.

One training step is what the StyleGAN2-ADA loop (``hpcgan.gan.train``) runs per
batch: the G phases (Gmain, plus Greg every ``g_reg_interval`` steps) and the D
phases (Dmain, plus Dreg every ``d_reg_interval`` steps), each followed by an
Adam step (after the NaN/inf gradient sanitising of the training loop), with the
ADA pipe (fixed p) in front of D. The same networks (same weights) run in every
variant: each ``--impl`` (``native``, ``ref``) times each ``--precision``
(``fp32``; ``mixed`` = the ``--fp16-res`` highest resolutions of G and D in half
precision, float16 on CUDA and bfloat16 on CPUs, with conv_clamp 256, as
``hpcgan train-gan --precision mixed``).

Cases are ``PRESET@RES``: the network sizes, batch and regularisation settings of
``configs/gan/<PRESET>.yaml`` at resolution RES. The defaults are the CPU preset
at its own size (``cpu-smoke@32``) and 128 px with the channels of the 64-px CPU
preset (``cpu-64@128``).

Timing: a timed run is one D-regularisation period (``d_reg_interval`` steps,
16), so the lazy regularisers weigh in at their real frequency. The variants
are measured interleaved, in ABBA order over ``--rounds`` (A B, B A, ...), so
that a change in the load of a shared machine hits all alike; reported: the
median sec/kimg (seconds per thousand real images shown to D) of each, and the
ratios of medians with the spread of the per-round ratios (min-max):
``speedup`` = ref / native (per precision) and ``mixed speedup`` = fp32 / mixed
(per implementation).

Peak memory (on unless ``--no-mem``): for each implementation a fresh child
process runs the warm-up and one period and reports the peak CUDA allocation,
or on the CPU the peak RSS minus the RSS before the first step (torch, the
extension and the networks excluded), so the two numbers do not contaminate
each other.

``--profile N`` adds a torch.profiler table of the native step (self CPU time by
op over N steps, grouped into the op families that matter).

    python benchmarks/train_step.py                           # cpu-smoke@32 and cpu-64@128
    python benchmarks/train_step.py --case cpu-smoke@32 --rounds 4 --json out.json
    python benchmarks/train_step.py --case cpu-64@64 --batch 8 --profile 16
    python benchmarks/train_step.py --case cpu-64@64 --impl native --precision fp32 mixed --rounds 4
    python benchmarks/train_step.py --case paper-256@256 --impl native --precision fp32 mixed --device cuda

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
import statistics
import subprocess
import sys
import time

import torch
import yaml

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from hpcgan.gan import AugmentPipe, Discriminator, Generator, StyleGAN2Loss, lazy_regularization_adam, set_impl  # noqa: E402
from hpcgan.atomic import atomic_write_text  # noqa: E402
from hpcgan.bench.timing import timed_steps  # noqa: E402
from hpcgan.gan.loss import sanitize_gradients  # noqa: E402

MIXED_CONV_CLAMP = 256.0  # what `--precision mixed` clamps with (hpcgan.gan.config.MIXED_CONV_CLAMP)


def case_settings(case: str, args) -> dict:
    """``PRESET@RES`` -> the network and loss settings of that preset at that resolution."""
    preset, _, res = case.partition("@")
    path = os.path.join(REPO, "configs", "gan", f"{preset}.yaml")
    if not os.path.isfile(path):
        raise SystemExit(f"--case {case}: no preset {path}")
    cfg = yaml.safe_load(open(path)) or {}
    res = int(res) if res else 32
    batch = args.batch or int(cfg.get("batch", 16))
    gamma = cfg.get("r1_gamma", "auto")
    gamma = 0.0002 * res * res / batch if gamma in (None, "auto") else float(gamma)
    return dict(case=case, res=res, batch=batch, z_dim=int(cfg.get("z_dim", 512)), w_dim=int(cfg.get("w_dim", 512)),
                channel_base=int(cfg.get("channel_base", 16384)), channel_max=int(cfg.get("channel_max", 512)),
                mapping_layers=int(cfg.get("mapping_layers", 8)), g_reg_interval=int(cfg.get("g_reg_interval", 4)),
                d_reg_interval=int(cfg.get("d_reg_interval", 16)), gamma=gamma,
                pl_weight=float(cfg.get("pl_weight", 2.0)), mbstd_group=int(cfg.get("mbstd_group", 4)),
                fp16_res=args.fp16_res if args.fp16_res is not None else int(cfg.get("fp16_res", 4)),
                c_dim=args.c_dim, p=args.p)


def build(s: dict, device, precision: str = "fp32"):
    """G and D of case ``s``; the same weights in every precision (num_fp16_res adds no parameters)."""
    torch.manual_seed(0)
    mixed = precision == "mixed"
    kw = dict(img_resolution=s["res"], channel_base=s["channel_base"], channel_max=s["channel_max"],
              num_fp16_res=s["fp16_res"] if mixed else 0, conv_clamp=MIXED_CONV_CLAMP if mixed else None)
    G = Generator(z_dim=s["z_dim"], c_dim=s["c_dim"], w_dim=s["w_dim"], mapping_layers=s["mapping_layers"], **kw)
    D = Discriminator(c_dim=s["c_dim"], mapping_layers=s["mapping_layers"], mbstd_group_size=min(s["mbstd_group"], s["batch"]), **kw)
    return G.to(device), D.to(device)


def variant_name(impl: str, precision: str) -> str:
    return f"{impl}/{precision}"


class Stepper:
    """One variant's copy of the networks, loss and optimisers; ``run(n)`` times n steps."""

    def __init__(self, G, D, impl: str, s: dict, device):
        self.G, self.D = set_impl(copy.deepcopy(G), impl), set_impl(copy.deepcopy(D), impl)
        self.impl, self.s, self.device = impl, s, device
        self.nonfinite = 0  # gradient values sanitised so far
        self.loss = StyleGAN2Loss(self.G, self.D, AugmentPipe(p=s["p"]).to(device), r1_gamma=s["gamma"],
                                  pl_weight=s["pl_weight"], g_reg_interval=s["g_reg_interval"],
                                  d_reg_interval=s["d_reg_interval"])
        g_lr, g_betas = lazy_regularization_adam(0.0025, (0.0, 0.99), s["g_reg_interval"])
        d_lr, d_betas = lazy_regularization_adam(0.0025, (0.0, 0.99), s["d_reg_interval"])
        self.opt = {"G": torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas),
                    "D": torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas)}
        self.gen = torch.Generator(device="cpu").manual_seed(0)
        self.i = 0

    def _batch(self):
        B, R, c_dim = self.s["batch"], self.s["res"], self.s["c_dim"]
        real = (torch.rand(B, 1, R, R, generator=self.gen) * 2 - 1).to(self.device)
        z = torch.randn(B, self.s["z_dim"], generator=self.gen).to(self.device)
        c = None
        if c_dim:
            c = torch.nn.functional.one_hot(torch.randint(c_dim, (B,), generator=self.gen), c_dim).float().to(self.device)
        return real, c, z, c

    def step(self) -> None:
        real, c, z, gc = self._batch()
        for phase in self.loss.phases_for_step(self.i):
            o = self.opt[phase[0]]
            o.zero_grad(set_to_none=True)
            self.loss.accumulate_gradients(phase, real, c, z, gc)
            self.nonfinite += sanitize_gradients(self.G.parameters() if phase[0] == "G" else self.D.parameters())
            o.step()
        self.i += 1

    def run(self, n: int) -> float:
        """sec/kimg of ``n`` steps starting at a D-regularisation step."""
        self.i = 0
        return timed_steps(self.step, n, self.device) / (n * self.s["batch"]) * 1000


def peak_memory_child(case: str, variant: str, args) -> float:
    """Peak memory (MiB) of a fresh process that runs the warm-up and one period of ``variant`` (impl/precision)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--_mem-child", variant,
           "--device", args.device, "--c-dim", str(args.c_dim), "--p", str(args.p), "--warmup", str(args.warmup)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.fp16_res is not None:
        cmd += ["--fp16-res", str(args.fp16_res)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mem_mb"])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mem_mb(device, base_mb: float = 0.0) -> float:
    """CUDA: the peak allocation; CPU: peak RSS (Linux ru_maxrss) minus ``base_mb`` (the RSS before training)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_mb  # Linux: KiB


FAMILIES = [  # (family, substrings of aten/hpcgan op names), first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "_convolution", "conv2d", "conv_transpose", "slow_conv")),
    ("hpcgan upfirdn2d", ("upfirdn2d",)),
    ("hpcgan bias_act", ("bias_act",)),
    ("hpcgan modconv (modulate, epilogue)", ("modulate", "modconv_epilogue")),
    ("elementwise (mul, add, ...)", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::rsqrt", "aten::sqrt",
                                     "aten::square", "aten::pow", "aten::neg", "aten::where", "aten::lerp",
                                     "aten::softplus", "aten::leaky_relu", "aten::clamp", "aten::sign", "aten::exp")),
    ("reductions (sum, mean)", ("aten::sum", "aten::mean", "aten::std", "aten::var")),
    ("copies and layout", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat", "aten::to", "aten::_to_copy",
                           "aten::fill_", "aten::zero_", "aten::zeros", "aten::empty", "aten::stack")),
    ("matmul (mapping, styles)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("grid_sample (ADA)", ("grid_sampler",)),
    ("optimizer (Adam)", ("_foreach", "adam")),
]


def profile_native(stepper: Stepper, n: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    stepper.i = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            stepper.step()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    fam: dict[str, float] = {}
    for e in events:
        name = e.key
        for label, subs in FAMILIES:  # noqa: B007 - label is read after the loop (break)
            if any(s in name for s in subs):
                break
        else:
            label = "other (dispatch, autograd bookkeeping, small ops)"
        fam[label] = fam.get(label, 0.0) + e.self_cpu_time_total
    top = sorted(((e.key, e.self_cpu_time_total, e.count) for e in events), key=lambda t: -t[1])[:15]
    return {"steps": n, "wall_s": wall, "self_cpu_total_s": total / 1e6,
            "families": {k: v / total for k, v in sorted(fam.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"op": k, "share": v / total, "calls": c} for k, v, c in top]}


def _ratios(times: dict, slow: str, fast: str) -> dict:
    """median(slow) / median(fast) and the min-max of the per-round ratios."""
    per_round = [b / a for a, b in zip(times[fast], times[slow])]
    return {"ratio": statistics.median(times[slow]) / statistics.median(times[fast]),
            "min": min(per_round), "max": max(per_round), "slow": slow, "fast": fast}


def comparisons(impls: list[str], precisions: list[str]) -> dict:
    """Label -> (slow variant, fast variant): ref vs native per precision, fp32 vs mixed per impl."""
    out = {}
    if "native" in impls and "ref" in impls:
        for prec in precisions:
            out[f"speedup native vs ref ({prec})"] = (variant_name("ref", prec), variant_name("native", prec))
    if "fp32" in precisions and "mixed" in precisions:
        for impl in impls:
            out[f"mixed speedup ({impl})"] = (variant_name(impl, "fp32"), variant_name(impl, "mixed"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", nargs="+", default=["cpu-smoke@32", "cpu-64@128"],
                    help="PRESET@RES cases: network sizes, batch and regularisers of configs/gan/PRESET.yaml at RES px")
    ap.add_argument("--impl", nargs="+", default=["native", "ref"], choices=("native", "ref"),
                    help="op implementations to time (default both)")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "mixed"),
                    help="precisions to time (default fp32); 'fp32 mixed' compares them in the same run "
                    "(mixed: fp16 on CUDA, bf16 on CPU, conv_clamp 256)")
    ap.add_argument("--fp16-res", dest="fp16_res", type=int, default=None,
                    help="half-precision resolutions with mixed (default: the preset's fp16_res, else 4)")
    ap.add_argument("--batch", type=int, default=None, help="override the preset's batch size")
    ap.add_argument("--c-dim", type=int, default=2, help="classes (0: unconditional)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved ABBA rounds (each times every variant once)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--p", type=float, default=0.2, help="ADA probability (fixed)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--no-mem", action="store_true", help="skip the peak-memory child processes")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile N steps of the first variant (torch.profiler)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--_mem-child", dest="mem_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.mem_child:  # a child of peak_memory_child: one case, one variant
        impl, _, prec = args.mem_child.partition("/")
        s = case_settings(args.case[0], args)
        G, D = build(s, device, prec or "fp32")
        st = Stepper(G, D, impl, s, device)
        del G, D
        base = 0.0 if device.type == "cuda" else _rss_mb()  # torch, the extension and the networks
        for _ in range(args.warmup):
            st.step()
        st.run(s["d_reg_interval"])
        print(json.dumps({"peak_mem_mb": _peak_mem_mb(device, base)}))
        return 0

    variants = [(impl, prec) for prec in args.precision for impl in args.impl]
    names = [variant_name(*v) for v in variants]
    compare = comparisons(args.impl, args.precision)
    rows, profiles = [], {}
    for case in args.case:
        s = case_settings(case, args)
        nets = {prec: build(s, device, prec) for prec in args.precision}
        st = {variant_name(impl, prec): Stepper(*nets[prec], impl, s, device) for impl, prec in variants}
        for name in names:
            for _ in range(args.warmup):
                st[name].step()
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                times[name].append(st[name].run(s["d_reg_interval"]))
            print(f"  {case} round {r}: " + "  ".join(f"{n} {times[n][-1]:.1f}" for n in names) + " sec/kimg",
                  file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = {label: _ratios(times, slow, fast) for label, (slow, fast) in compare.items()}
        mem = {} if args.no_mem else {n: peak_memory_child(case, n, args) for n in names}
        G0, D0 = nets[args.precision[0]]
        row = {**s, "params_G": sum(p.numel() for p in G0.parameters()),
               "params_D": sum(p.numel() for p in D0.parameters()), "steps_per_round": s["d_reg_interval"],
               "sec_per_kimg": med, "rounds": times, "ratios": ratios, "peak_mem_mb": mem,
               "grad_nonfinite": {n: st[n].nonfinite for n in names}}
        label = f"speedup native vs ref ({args.precision[0]})"
        if label in ratios:  # the fields of earlier results files (native/ref in fp32)
            row.update(speedup=ratios[label]["ratio"], ratio_min=ratios[label]["min"], ratio_max=ratios[label]["max"])
        rows.append(row)
        if args.profile:
            profiles[case] = profile_native(st[names[0]], args.profile)

    mem_label = "peak MiB (CUDA alloc)" if device.type == "cuda" else "training peak RSS MiB"
    half = "float16" if device.type == "cuda" else "bfloat16"
    print(f"StyleGAN2-ADA training step (G+D with lazy R1 and path length, ADA p={args.p}), {device} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"{args.rounds} interleaved rounds of one D-reg period; mixed = {half} in the fp16_res highest "
          f"resolutions, conv_clamp 256\n")
    print(f"| case | res | batch | channels base/max | variant (impl/precision) | sec/kimg | {mem_label} | "
          "non-finite grads |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        for n in names:
            m = r["peak_mem_mb"].get(n)
            print(f"| {r['case']} | {r['res']} | {r['batch']} | {r['channel_base']}/{r['channel_max']} | {n} | "
                  f"{r['sec_per_kimg'][n]:.1f} | {'-' if m is None else f'{m:.0f}'} | {r['grad_nonfinite'][n]} |")
    if compare:
        print("\n| case | comparison | ratio of medians (min-max per round) |")
        print("| --- | --- | --- |")
        for r in rows:
            for label, q in r["ratios"].items():
                print(f"| {r['case']} | {label} | {q['ratio']:.2f}x ({q['min']:.2f}-{q['max']:.2f}) |")
    for case, prof in profiles.items():
        print(f"\n{names[0]} step profile, {case}: {prof['steps']} steps, self CPU time "
              f"{prof['self_cpu_total_s']:.1f} s\n")
        print("| op family | share of self CPU time |")
        print("| --- | ---: |")
        for k, v in prof["families"].items():
            print(f"| {k} | {100 * v:.1f}% |")
    if args.json:
        meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "load_avg_at_end": os.getloadavg(), "args": vars(args),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
        atomic_write_text(args.json, json.dumps({"meta": meta, "rows": rows, "profiles": profiles}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
