"""StyleGAN2's fused ops on the native extension hpcgan._C.

Each op has a validated public function (``impl="auto"|"native"|"ref"``), a
plain-PyTorch reference ``*_ref`` (the test oracle) and a native kernel
registered as ``torch.ops.hpcgan.*`` with autograd.
"""

from hpcgan.ops.bias_act import ACTIVATIONS, bias_act, bias_act_ref
from hpcgan.ops.modulated_conv2d import modulated_conv2d, modulated_conv2d_ref
from hpcgan.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "bias_act_ref",
    "downsample2d",
    "filter2d",
    "modulated_conv2d",
    "modulated_conv2d_ref",
    "setup_filter",
    "upfirdn2d",
    "upfirdn2d_ref",
    "upsample2d",
]
