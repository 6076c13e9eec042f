"""Reporting of ``hpcgan bench scaling``: the markdown tables (measured next to the model, and the model's
multi-node table), the PNG plot and the JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hpcgan.atomic import atomic_path, atomic_write_text
from hpcgan.bench.model import WHATS


def format_model_markdown(m: dict) -> str:
    p = m["params"]
    lines = [
        f"Model: StyleGAN2 {m['resolution']} px ({Path(m['preset']).name if m['preset'] else 'defaults'}), "
        f"G {p['G'] / 1e6:.2f} M + D {p['D'] / 1e6:.2f} M parameters; {m['bytes_per_step'] / 2**20:.1f} MiB and "
        f"{m['allreduce_calls_per_step']:.3f} all-reduces per step (fp32, lazy regularisation every "
        f"{p['g_reg_interval']}/{p['d_reg_interval']} steps); {m['gpus_per_node']} GPUs per node, "
        f"{m['step_time_s'] * 1e3:.0f} ms per GPU step at {m['batch_gpu']} images; links {m['bandwidth_gbps']:g} "
        f"Gbit/s + {m['latency_us']:g} us between nodes, {m['intra_bandwidth_gbs']:g} GB/s + "
        f"{m['intra_latency_us']:g} us inside; overlap {m['overlap']:g}",
        "",
        "| nodes | GPUs | all-reduce / step (hier.) | weak: global batch | weak: step | weak: img/s | weak: efficiency "
        "| weak: eff. flat ring | strong (batch " + str(m["strong_batch"]) + "): per GPU | strong: step | strong: efficiency |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in m["rows"]:
        w, s = r["weak"], r.get("strong")
        st = (f"{s['batch_gpu']} | {s['step_s'] * 1e3:.0f} ms | {s['efficiency']:.2f}" if s else "- | - | -")
        lines.append(f"| {r['nodes']} | {r['gpus']} | {r['comm_hier_s'] * 1e3:.1f} ms | {w['global_batch']} | "
                     f"{w['step_s'] * 1e3:.0f} ms | {w['img_per_s']:.0f} | {w['efficiency']:.2f} | "
                     f"{w['efficiency_flat']:.2f} | {st} |")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    """The measurements (medians, min-max over repeats) next to the model's predictions, as markdown."""
    c, m = result["config"], result["meta"]
    lines = [f"Scaling on {m['host']} ({m['cpus']} CPUs, {m['threads_per_rank']} thread(s) per rank, launcher "
             f"{m['launcher']}, torch {m['torch']}, 1-min load average {m.get('load_avg_start')} at the start and "
             f"{m.get('load_avg_end')} at the end); {c['repeats']} repeat(s), median [min-max]. Model interconnect: "
             f"{c['bandwidth_gbps']:g} Gbit/s, {c['latency_us']:g} us, overlap {c['overlap']:g}.", ""]
    for what in WHATS:
        rows = [r for r in result["rows"] if r["what"] == what]
        if not rows:
            continue
        if what == "gan-step":
            lines += [f"GAN training step ({c['resolution']} px, {rows[0]['bytes_per_step'] / 2**20:.2f} MiB and "
                      f"{rows[0]['allreduce_calls_per_step']:.2f} gradient all-reduces per step; {c['steps']} timed "
                      f"steps after {c['warmup']} warm-up):", "",
                      "| mode | ranks | nodes | global batch | time/step (s) | compute | wait | comm | img/s "
                      "| efficiency | model: comm | model: time/step | model: efficiency | measured bus bw |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                      "| ---: |"]
        else:
            lines += ["Preprocessing (MPI ranks, one worker process each):", "",
                      "| mode | ranks | nodes | images | time (s) | compute | wait | comm | img/s | efficiency "
                      "| model: comm | model: time | model: efficiency | collectives |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                      "| ---: |"]
        for r in rows:
            p = r["predicted"]
            extra = (f"{r['measured_busbw_gbs']:.2f} GB/s" if "measured_busbw_gbs" in r else "-") \
                if what == "gan-step" else f"{r['collectives']} ({r['collective_bytes'] / 1024:.0f} KiB)"
            lines.append(
                f"| {r['mode']} | {r['ranks']} | {r.get('nodes', 1)} | {r['images']} | {r['time_s']:.3f} [{r['time_min_s']:.3f}-"
                f"{r['time_max_s']:.3f}] | {r['compute_s']:.3f} | {r['wait_s']:.4f} | {r['comm_s']:.4f} | "
                f"{r['img_per_s']:.1f} | {r['efficiency']:.2f} | {p['comm_s'] * 1e3:.2f} ms | {p['time_s']:.3f} | "
                f"{p['efficiency']:.2f} | {extra} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: str | os.PathLike) -> Path:
    """PNG: throughput, efficiency (measured vs model) and the time split per workload and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    whats = [w for w in WHATS if any(r["what"] == w for r in rows)]
    fig, axes = plt.subplots(len(whats), 3, figsize=(15, 4.2 * len(whats)), squeeze=False)
    for i, what in enumerate(whats):  # one row of panels per workload
        ax_t, ax_e, ax_s = axes[i]
        _scaling_panels(ax_t, ax_e, rows, what)
        _time_split_panel(ax_s, rows, what)
        for ax in (ax_t, ax_e):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["ranks"] for r in rows}), [str(n) for n in sorted({r["ranks"] for r in rows})])
            ax.grid(alpha=0.3)
        for ax in (ax_t, ax_e, ax_s):
            ax.legend(fontsize=8)
    m = result["meta"]
    fig.suptitle(f"hpcgan scaling on {m['host']} ({m['cpus']} CPUs, {m['threads_per_rank']} thread/rank, "
                 f"{m['launcher']})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _scaling_panels(ax_t, ax_e, rows: list[dict], what: str) -> None:
    """Throughput (images/s, min-max error bars) and efficiency (measured, and the model's dashed) over ranks."""
    for mode, color in (("strong", "tab:blue"), ("weak", "tab:orange")):
        rs = [r for r in rows if r["what"] == what and r["mode"] == mode]
        if not rs:
            continue
        ns = [r["ranks"] for r in rs]
        ax_t.errorbar(ns, [r["img_per_s"] for r in rs], marker="o", color=color, label=mode,
                      yerr=[[r["img_per_s"] - r["images"] / r["time_max_s"] for r in rs],
                            [r["images"] / r["time_min_s"] - r["img_per_s"] for r in rs]], capsize=3)
        ax_e.plot(ns, [r["efficiency"] for r in rs], marker="o", color=color, label=f"{mode} measured")
        ax_e.plot(ns, [r["predicted"]["efficiency"] for r in rs], ls="--", marker="x", color=color,
                  label=f"{mode} model")
    ax_t.set(title=f"{what}: throughput", xlabel="ranks", ylabel="images/s")
    ax_e.set(title=f"{what}: parallel efficiency", xlabel="ranks", ylabel="efficiency", ylim=(0, 1.3))


def _time_split_panel(ax_s, rows: list[dict], what: str) -> None:
    """Stacked bars per (mode, N): compute, wait, comm."""
    labels, comp, wait, comm = [], [], [], []
    for r in rows:
        if r["what"] == what:
            labels.append(f"{r['mode'][0]}{r['ranks']}")
            comp.append(r["compute_s"])
            wait.append(r["wait_s"])
            comm.append(r["comm_s"])
    x = range(len(labels))
    ax_s.bar(x, comp, label="compute", color="tab:green")
    ax_s.bar(x, wait, bottom=comp, label="wait", color="tab:gray")
    ax_s.bar(x, comm, bottom=[a + b for a, b in zip(comp, wait)], label="comm", color="tab:red")
    ax_s.set_xticks(list(x), labels)
    unit = "s per step" if what == "gan-step" else "s per run"
    ax_s.set(title=f"{what}: time split (s=strong, w=weak; ranks)", ylabel=unit)


def write_json(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1))
    return path
