"""The classifier stage: InceptionV3 / EfficientNet-B0 / a small CNN on grey chest X-rays.

- :mod:`hpcgan.classify.config`: :class:`ClassifyConfig` and its validation.
- :mod:`hpcgan.classify.models`: the networks on one channel, ImageNet weights from the hub cache.
- :mod:`hpcgan.classify.augment`: resize, the study's classical augmentation, normalisation.
- :mod:`hpcgan.classify.data`: real shards per split plus the recorded synthetic mix.
- :mod:`hpcgan.classify.train`: :func:`run_classify` (train, best-validation epoch, test metrics).
- :mod:`hpcgan.classify.evaluate`: :func:`evaluate_run` (a finished run on another data set: external
  validation, ``external_metrics.json``).

Imports only lower layers (metrics, data, dist); never hpcgan.gan, the experiment or the CLI.
"""

from hpcgan.classify.config import ClassifyConfig
from hpcgan.classify.train import run_classify

__all__ = ["ClassifyConfig", "run_classify"]
