"""StyleGAN2's fused ops on the native extension hpcgan._C.

Each op has a validated public function (``impl="auto"|"native"|"ref"``), a
plain-PyTorch reference ``*_ref`` (the test oracle) and a native kernel
registered as ``torch.ops.hpcgan.*`` with autograd.
"""

from hpcgan.ops.bias_act import ACTIVATIONS, bias_act, bias_act_ref

__all__ = ["ACTIVATIONS", "bias_act", "bias_act_ref"]
