"""The stages a job can run: stage name -> how its config is made from a request, and the stage call.

A *request* is JSON-able data (what ``run.json`` stores): for the config-driven stages the
resolved config as a dict (``hpcgan.config.to_dict``), for the others the stage function's
keyword arguments. :func:`load_request` turns it into what the stage function takes (a config
dataclass or a kwargs dict) on the login node, so a bad request fails at submission;
:func:`run_stage` calls the stage function inside the job and returns a small result (what it
wrote, counters, metrics). The CLI builds requests from its flags (``hpcgan.cli``); this module
never parses a flag.

The stage modules are imported inside the functions: ``hpcgan submit --help`` stays fast and a
job imports only the stage it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpcgan.errors import HpcganError


def config_from_dict(cls, request: dict):
    """``cls(**request)`` with a clear error for unknown fields (a request is a resolved config: every
    value, None included, is kept as it is)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(request) - fields)
    if unknown:
        raise HpcganError(f"{cls.__name__} request has unknown fields {unknown}; known: {sorted(fields)}")
    try:
        return cls(**request)
    except TypeError as exc:
        raise HpcganError(f"incomplete {cls.__name__} request: {exc}") from exc


# -- phantom -------------------------------------------------------------------------------------


def _phantom(kw: dict) -> dict:
    from hpcgan.data.phantom import phantoms_and_summarise

    return phantoms_and_summarise(**kw)


# -- preprocess, data ----------------------------------------------------------------------------


def _preprocess_config(request: dict):
    from hpcgan.data.preprocess import PreprocessConfig

    return config_from_dict(PreprocessConfig, request)


def _preprocess(cfg) -> dict:
    from hpcgan.data.preprocess import preprocess_and_summarise

    return {"out": cfg.out, "summary": preprocess_and_summarise(cfg)}


def _data_request(request: dict) -> dict:
    if request.get("action") not in ("info", "verify"):
        raise HpcganError(f"data request: action must be info or verify, got {request.get('action')!r}")
    return dict(request)


def _data(kw: dict) -> dict:
    from hpcgan.data.preprocess import verify_and_summarise
    from hpcgan.data.shards import info

    out = kw["out"]
    if kw["action"] == "info":
        print(info(out))
        return {"out": out, "action": "info"}
    res = verify_and_summarise(out, checksums=kw.get("checksums", True))
    if res["problems"]:  # the CLI exits 1: the job fails
        raise HpcganError(f"data verify {out}: {len(res['problems'])} problem(s), first: {res['problems'][0]}")
    return {"out": out, "action": "verify", "shards": res["shards"], "problems": 0}


# -- GAN -----------------------------------------------------------------------------------------


def _train_config(request: dict):
    from hpcgan.gan.config import TrainConfig

    return config_from_dict(TrainConfig, request)


def train_and_report(cfg) -> dict:
    """``hpcgan.gan.train.train_and_summarise``: train's result ({"status": "done"|"interrupted", "snapshot",
    "run_dir", "kimg", "signal", ...}), the summary line printed as ``hpcgan train-gan`` prints it."""
    from hpcgan.gan.train import train_and_summarise

    return train_and_summarise(cfg)


def _generate_config(request: dict):
    from hpcgan.gan.generate import GenerateConfig

    return config_from_dict(GenerateConfig, request)


def _generate(cfg) -> dict:
    from hpcgan.gan.generate import generate_and_summarise

    return generate_and_summarise(cfg)


# -- metrics, classify ---------------------------------------------------------------------------


def _metrics_request(request: dict) -> dict:
    if not isinstance(request.get("kwargs"), dict):
        raise HpcganError("metrics request: {'kwargs': compare_shards arguments, 'json': path or None}")
    return dict(request)


def _metrics(req: dict) -> dict:
    from hpcgan.metrics.compare import compare_and_summarise

    return {"json": req.get("json"), "metrics": compare_and_summarise(req.get("json"), **req["kwargs"])}


def _classify_config(request: dict):
    from hpcgan.classify.config import ClassifyConfig

    return config_from_dict(ClassifyConfig, request)


def _classify(cfg) -> dict:
    from hpcgan.classify.train import classify_and_summarise

    return classify_and_summarise(cfg)


# -- experiment, report --------------------------------------------------------------------------


def experiment_config(request: dict):
    """The grid's ExperimentConfig from its request (a resolved config: paths already absolute), read as the
    grid's own worker processes read their copy."""
    from hpcgan.experiment.grid import experiment_config_from_dict

    return experiment_config_from_dict(request)


def run_experiment_task(cfg, index: int) -> dict:
    """Task ``index`` of the grid (idempotent); its name, folder and accuracy."""
    from hpcgan.experiment.grid import expand, run_task

    res = run_task(cfg, index)  # checks the index
    t = expand(cfg)[index]
    print(f"task {index} {t.name}: accuracy {res.get('accuracy')} ({t.outdir})")
    return {"index": index, "name": t.name, "outdir": t.outdir, "accuracy": res.get("accuracy")}


def _report_request(request: dict) -> dict:
    if not request.get("experiment_dir"):
        raise HpcganError("report request: {'experiment_dir', 'alpha', 'compute_image_metrics'}")
    return {"alpha": 0.05, "compute_image_metrics": True, **request}


def write_experiment_report(kw: dict) -> dict:
    """Aggregate the grid and write its report/ (``hpcgan report``); the counts of results.json."""
    from hpcgan.experiment.report import report_and_summarise

    return report_and_summarise(kw["experiment_dir"], alpha=kw["alpha"],
                                compute_image_metrics=kw["compute_image_metrics"])


# -- bench ---------------------------------------------------------------------------------------


def _bench_request(request: dict) -> dict:
    from hpcgan.bench import ScalingConfig

    if request.get("model_only"):
        return dict(request)
    return {**request, "config": config_from_dict(ScalingConfig, request["config"])}


def _bench(req: dict) -> dict:
    from hpcgan.bench import model_and_write, scaling_and_write

    if req.get("model_only"):
        return {"written": model_and_write(req["model"], req.get("json"))}
    return {"written": scaling_and_write(req["config"], req.get("json"), req.get("plot"))}


# -- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """A job-able stage: ``load`` makes what the stage function takes from a JSON-able request, ``call``
    runs it and returns a small JSON-able result."""

    name: str
    load: Callable[[dict], Any]
    call: Callable[[Any], dict]


def _kwargs(request: dict) -> dict:
    return dict(request)


REGISTRY: dict[str, Stage] = {s.name: s for s in (
    Stage("phantom", _kwargs, _phantom),
    Stage("preprocess", _preprocess_config, _preprocess),
    Stage("data", _data_request, _data),
    Stage("train-gan", _train_config, train_and_report),  # as a job: hpcgan.launch.submit.TrainGanJob
    Stage("generate", _generate_config, _generate),
    Stage("metrics", _metrics_request, _metrics),
    Stage("classify", _classify_config, _classify),
    Stage("experiment", experiment_config, run_experiment_task),  # as jobs: ExperimentTask array + ReportJob
    Stage("report", _report_request, write_experiment_report),
    Stage("bench", _bench_request, _bench),
)}


def get(stage: str) -> Stage:
    try:
        return REGISTRY[stage]
    except KeyError:
        raise HpcganError(f"submit: unknown stage {stage!r}; one of {', '.join(REGISTRY)}") from None


def load_request(stage: str, request: dict):
    """What ``stage``'s function takes (a config or kwargs), made from its JSON-able request."""
    if not isinstance(request, dict):
        raise HpcganError(f"submit {stage}: the request must be a dict (the stage's resolved config or kwargs), "
                          f"got {type(request).__name__}")
    return get(stage).load(request)


def run_stage(stage: str, config) -> dict:
    """Run ``stage`` with what :func:`load_request` made; its small result."""
    return get(stage).call(config)
