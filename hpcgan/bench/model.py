"""The communication model of ``hpcgan bench scaling``: ring all-reduce and all-gather costs, predicted step
times and efficiencies, the bytes the trainer all-reduces per step, and the multi-node table of a preset.

A ring all-reduce of ``b`` bytes over N ranks with link bandwidth ``bw`` (bytes/s) and
per-message latency ``a`` takes ``t_ring(b, N) = 2 (N - 1) / N * b / bw + 2 (N - 1) * a``
(a reduce-scatter and an all-gather, each N - 1 messages of b / N bytes). With the
single-rank compute time T1 and an overlap factor ``o``: strong ``T_N = T1 / N + (1 - o) t_comm``,
weak ``T_N = T1 + (1 - o) t_comm``. See :mod:`hpcgan.bench` for the whole model.
"""

from __future__ import annotations

WHATS = ("preprocess", "gan-step")  # the two workloads
MODES = ("strong", "weak")


def ring_allreduce_seconds(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` ranks: ``2 (n-1)/n * nbytes / bandwidth + 2 (n-1) * latency``.

    ``bandwidth`` in bytes/s, ``latency`` in s; 0 for one rank.
    """
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bandwidth + 2.0 * (n - 1) * latency


def hierarchical_allreduce_seconds(nbytes: float, nodes: int, per_node: int, bandwidth: float, latency: float,
                                   intra_bandwidth: float, intra_latency: float) -> float:
    """All-reduce over ``nodes`` nodes of ``per_node`` ranks: a ring inside each node plus rings across nodes.

    ``t_ring(nbytes, per_node; intra) + t_ring(nbytes / per_node, nodes; bandwidth / per_node, latency)``:
    the ``per_node`` concurrent inter-node rings each carry ``1/per_node`` of the bytes over
    an equal share of the node's link, so the second term equals a ring of all the bytes
    at the node's bandwidth. ``bandwidth`` is the node's link (bytes/s).
    """
    intra = ring_allreduce_seconds(nbytes, per_node, intra_bandwidth, intra_latency)
    inter = ring_allreduce_seconds(nbytes / per_node, nodes, bandwidth / per_node, latency)
    return intra + inter


def allgather_seconds(nbytes_per_rank: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring all-gather of ``nbytes_per_rank`` from each of ``n`` ranks: ``(n-1) (b / bandwidth + latency)``."""
    if n <= 1:
        return 0.0
    return (n - 1) * (nbytes_per_rank / bandwidth + latency)


def predict_step(t1: float, n: int, mode: str, comm_seconds: float, overlap: float = 0.0) -> dict:
    """Predicted time and efficiency at ``n`` ranks from the single-rank compute time ``t1``.

    strong: ``T = t1 / n + (1 - overlap) comm``, ``E = t1 / (n T)``;
    weak: ``T = t1 + (1 - overlap) comm``, ``E = t1 / T``.
    """
    compute = t1 / n if mode == "strong" else t1
    step = compute + (1.0 - overlap) * comm_seconds
    return {"compute_s": compute, "comm_s": comm_seconds, "step_s": step, "efficiency": efficiency(t1, step, n, mode)}


def efficiency(t_base: float, t_n: float, n: int, mode: str, n_base: int = 1) -> float:
    """Parallel efficiency: strong ``n0 T0 / (n Tn)``, weak ``T0 / Tn``."""
    if t_n <= 0:
        return float("nan")
    return (n_base * t_base) / (n * t_n) if mode == "strong" else t_base / t_n


def gan_comm_profile(g_params: int, d_params: int, buffers: int, phases: list[list[str]]) -> dict:
    """Bytes and all-reduce calls per step of hpcgan's trainer, averaged over the steps' phase lists.

    Each phase all-reduces one float32 tensor: its network's gradients (G for G phases,
    D for D phases), the tracked buffers and a failure flag, ``4 (params + buffers + 1)`` bytes.
    """
    total = calls = 0
    for step_phases in phases:
        for ph in step_phases:
            total += 4 * ((g_params if ph.startswith("G") else d_params) + buffers + 1)
            calls += 1
    k = max(1, len(phases))
    return {"bytes_per_step": total / k, "allreduce_calls_per_step": calls / k}


def _comm_model(nbytes: float, calls: float, n: int, bw: float, lat: float) -> float:
    """``calls`` ring all-reduces of ``nbytes`` bytes in all (bandwidth term on the total, latency per call)."""
    if n <= 1:
        return 0.0
    return ring_allreduce_seconds(nbytes, n, bw, 0.0) + calls * ring_allreduce_seconds(0.0, n, bw, lat)


def count_parameters(preset: str | None, resolution: int, c_dim: int, overrides: dict | None = None) -> dict:
    """G and D parameter and float-buffer counts of the StyleGAN2 networks a preset builds at ``resolution``."""
    import torch

    from hpcgan.config import load as load_config
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.networks import Discriminator, Generator

    cfg = load_config(TrainConfig, preset, {k: v for k, v in (overrides or {}).items() if v is not None})
    common = dict(c_dim=c_dim, img_resolution=resolution, img_channels=1, channel_base=cfg.channel_base,
                  channel_max=cfg.channel_max, conv_clamp=cfg.resolved_conv_clamp(), mapping_layers=cfg.mapping_layers)
    torch.manual_seed(0)
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, **common)
    D = Discriminator(**common)
    nb = sum(b.numel() for m in (G, D) for b in m.buffers() if b.is_floating_point())
    return {"G": sum(p.numel() for p in G.parameters()), "D": sum(p.numel() for p in D.parameters()), "buffers": nb,
            "g_reg_interval": cfg.g_reg_interval, "d_reg_interval": cfg.d_reg_interval, "batch": cfg.batch,
            "pl_weight": cfg.pl_weight}


def _phase_lists(_g_params, _d_params, g_int: int, d_int: int, pl_weight: float, steps: int) -> list[list[str]]:
    out = []
    for s in range(steps):
        ph = ["Gmain"] + (["Greg"] if pl_weight > 0 and s % g_int == 0 else [])
        ph += ["Dmain"] + (["Dreg"] if s % d_int == 0 else [])
        out.append(ph)
    return out


def model_table(preset: str | None, resolution: int = 256, c_dim: int = 2, nodes=(1, 2, 4, 8, 16, 32, 64),
                gpus_per_node: int = 4, step_time_s: float = 0.100, batch_gpu: int = 8, bandwidth_gbps: float = 200.0,
                latency_us: float = 5.0, intra_bandwidth_gbs: float = 200.0, intra_latency_us: float = 2.0,
                overlap: float = 0.0, strong_batch: int | None = None) -> dict:
    """Predicted multi-node scaling of a GAN preset (no measurement): weak and strong rows per node count.

    ``step_time_s`` is the single-GPU step time at ``batch_gpu`` images (compute only);
    per-GPU time is taken as proportional to the per-GPU batch (strong rows). Bytes per
    step follow :func:`gan_comm_profile` over one D-regularisation period. The all-reduce
    is :func:`hierarchical_allreduce_seconds` (intra-node ring at ``intra_bandwidth_gbs``
    GB/s, inter-node at ``bandwidth_gbps`` Gbit/s per node); the flat ring over all GPUs at
    the node bandwidth is given too. Strong rows keep the preset's global batch
    (``strong_batch``) and stop where a GPU would get less than one image.
    """
    # what one step moves: bytes and all-reduce calls over one D-regularisation period
    counts = count_parameters(preset, resolution, c_dim)
    phases = _phase_lists(counts["G"], counts["D"], counts["g_reg_interval"], counts["d_reg_interval"],
                          counts["pl_weight"], counts["d_reg_interval"])
    prof = gan_comm_profile(counts["G"], counts["D"], counts["buffers"], phases)
    B, k = prof["bytes_per_step"], prof["allreduce_calls_per_step"]
    bw, lat = bandwidth_gbps * 1e9 / 8, latency_us * 1e-6
    ibw, ilat = intra_bandwidth_gbs * 1e9, intra_latency_us * 1e-6
    strong_batch = strong_batch or counts["batch"]
    per_image = step_time_s / batch_gpu
    rows = []
    for n in nodes:  # per node count: the all-reduce time (hierarchical and flat), weak and strong rows
        p = n * gpus_per_node
        hier = (hierarchical_allreduce_seconds(B, n, gpus_per_node, bw, 0.0, ibw, 0.0)
                + k * hierarchical_allreduce_seconds(0.0, n, gpus_per_node, bw, lat, ibw, ilat))
        flat = _comm_model(B, k, p, bw, lat)
        weak = predict_step(step_time_s, p, "weak", hier, overlap)
        row = {"nodes": n, "gpus": p, "comm_hier_s": hier, "comm_flat_s": flat,
               "weak": {"global_batch": batch_gpu * p, "step_s": weak["step_s"], "efficiency": weak["efficiency"],
                        "efficiency_flat": predict_step(step_time_s, p, "weak", flat, overlap)["efficiency"],
                        "img_per_s": batch_gpu * p / weak["step_s"]}}
        if strong_batch % p == 0:
            t1 = per_image * strong_batch  # one GPU doing the whole global batch
            st = predict_step(t1, p, "strong", hier, overlap)
            row["strong"] = {"global_batch": strong_batch, "batch_gpu": strong_batch // p, "step_s": st["step_s"],
                             "efficiency": st["efficiency"], "img_per_s": strong_batch / st["step_s"]}
        rows.append(row)
    return {"preset": preset, "resolution": resolution, "c_dim": c_dim, "params": counts, **prof,
            "gpus_per_node": gpus_per_node, "step_time_s": step_time_s, "batch_gpu": batch_gpu,
            "bandwidth_gbps": bandwidth_gbps, "latency_us": latency_us, "intra_bandwidth_gbs": intra_bandwidth_gbs,
            "intra_latency_us": intra_latency_us, "overlap": overlap, "strong_batch": strong_batch, "rows": rows}
