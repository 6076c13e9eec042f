"""Scaling benchmarks (``hpcgan bench scaling``): measured strong/weak scaling next to a ring all-reduce model.

Two workloads, each over a list of rank counts N:

* ``preprocess``: :func:`hpcgan.data.preprocess.run_preprocess` over N MPI ranks
  (images/s). Strong scaling keeps the image count, weak scaling gives every rank
  the same count (``images * N`` in all). Every collective of the stage goes
  through a timed :class:`hpcgan.dist.Comm`, which puts a barrier before it: the barrier's time is
  *wait* (load imbalance), the collective's own time is *comm*.
* ``gan-step``: the StyleGAN2-ADA training step of :class:`hpcgan.gan.train.Trainer`
  over N DDP ranks (gloo on CPUs, nccl on GPUs). The trainer averages each phase's
  gradients in one all-reduce; the benchmark times it through the trainer's
  ``sync_wrapper`` hook with a barrier in front, so *comm* is the all-reduce alone and *wait* the time the
  rank waited for the slowest one. Strong scaling keeps the global batch (``batch``
  images, ``batch / N`` per rank), weak scaling the per-rank batch (``batch`` per
  rank, ``batch * N`` in all). Data loading is outside the timed step.

Per measurement: time T (per step, or per preprocessing run), split
``T = compute + wait + comm``; throughput (images/s); parallel efficiency against
the smallest rank count N0 measured (normally 1): strong ``E = N0 T0 / (N T_N)``,
weak ``E = T0 / T_N``; each (workload, mode, N) is measured ``repeats`` times and the
median is used, with the min-max spread reported.

The model (:func:`ring_allreduce_seconds`, :func:`predict_step`): a ring all-reduce
of ``b`` bytes over N ranks with link bandwidth ``bw`` (bytes/s) and per-message
latency ``a`` takes

    t_ring(b, N) = 2 (N - 1) / N * b / bw + 2 (N - 1) * a

(a reduce-scatter and an all-gather, each N - 1 messages of b / N bytes). A step
that issues ``k`` all-reduces of ``B`` bytes in all costs
``t_comm = 2 (N-1)/N * B / bw + k * 2 (N-1) * a``; with the single-rank compute time
T1 and an overlap factor ``o`` (the fraction of communication hidden behind
compute; 0 for hpcgan's trainer, which reduces after the backward pass):

    strong: T_N = T1 / N + (1 - o) t_comm,   E = T1 / (N T_N)
    weak:   T_N = T1     + (1 - o) t_comm,   E = T1 / T_N

On nodes of G GPUs with a fast intra-node link (:func:`hierarchical_allreduce_seconds`)
the all-reduce is a ring inside each node (NVLink bandwidth) plus G concurrent rings
across the nodes, each carrying 1/G of the bytes over a 1/G share of the node's link:
``t = t_ring(B, G; nvlink) + 2 (n-1)/n * B / bw_node + 2 (n-1) a_node`` for n nodes.
Preprocessing's collectives (gathers of metadata) are modelled as ring all-gathers,
``(N - 1) (b / bw + a)`` for b bytes per rank.

Launch: the driver (:func:`run_scaling`) starts ``mpirun -np N`` (or ``srun -n N
--mpi=pmix``) of the rank worker (``python -m hpcgan.bench.worker SPEC``) once
per N; rank 0 of the worker writes the measurements as JSON, which the driver
reads. ``launcher="current"`` measures the job it already runs in (every rank calls
:func:`run_scaling`; N is the job's world size), for a cluster job per node count.

The package, one module per part: :mod:`~hpcgan.bench.model` (the communication model),
:mod:`~hpcgan.bench.worker` (the rank worker), :mod:`~hpcgan.bench.driver` (settings,
launches, aggregation) and :mod:`~hpcgan.bench.report` (tables, plot, JSON).
"""

from hpcgan.bench.driver import (LAUNCHERS, ScalingConfig, aggregate, model_and_write, model_main, run_scaling,
                                 scaling_and_write, scaling_main)
from hpcgan.bench.model import (MODES, WHATS, allgather_seconds, count_parameters, efficiency, gan_comm_profile,
                                hierarchical_allreduce_seconds, model_table, predict_step, ring_allreduce_seconds)
from hpcgan.bench.report import format_markdown, format_model_markdown, plot, write_json
from hpcgan.bench.worker import run_worker

__all__ = ["ScalingConfig", "run_scaling", "aggregate", "scaling_main", "model_main", "scaling_and_write",
           "model_and_write", "ring_allreduce_seconds",
           "hierarchical_allreduce_seconds", "allgather_seconds", "predict_step", "efficiency", "gan_comm_profile",
           "count_parameters", "model_table", "format_markdown", "format_model_markdown", "plot", "write_json",
           "run_worker", "WHATS", "MODES", "LAUNCHERS"]
