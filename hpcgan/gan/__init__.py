"""StyleGAN2-ADA for chest X-rays: networks, adaptive augmentation, losses.

Building blocks (this package's modules):

- :mod:`hpcgan.gan.layers`: equalised-lr FullyConnected and Conv2d, MinibatchStd, ``set_impl``.
- :mod:`hpcgan.gan.networks`: MappingNetwork, SynthesisNetwork, Generator, Discriminator.
- :mod:`hpcgan.gan.augment`: AugmentPipe (differentiable grayscale ADA) and AdaController.
- :mod:`hpcgan.gan.loss`: StyleGAN2Loss (non-saturating logistic, lazy R1, path length,
  style mixing) and NonFiniteLossError.

Every network takes ``impl="auto"|"native"|"ref"`` and passes it to each op of
:mod:`hpcgan.ops`.
"""

from hpcgan.gan.augment import AdaController, AugmentPipe
from hpcgan.gan.layers import Conv2d, FullyConnected, MinibatchStd, normalize_2nd_moment, set_impl
from hpcgan.gan.loss import PHASES, NonFiniteLossError, StyleGAN2Loss, lazy_regularization_adam
from hpcgan.gan.networks import Discriminator, Generator, MappingNetwork, SynthesisNetwork

__all__ = [
    "AdaController",
    "AugmentPipe",
    "Conv2d",
    "Discriminator",
    "FullyConnected",
    "Generator",
    "MappingNetwork",
    "MinibatchStd",
    "NonFiniteLossError",
    "PHASES",
    "StyleGAN2Loss",
    "SynthesisNetwork",
    "lazy_regularization_adam",
    "normalize_2nd_moment",
    "set_impl",
]
