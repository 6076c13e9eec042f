"""The metrics stage: FID and KID (``fid``), image similarity and the memorisation check
(``similarity``), generated-vs-real comparison of shard sets (``compare``, ``hpcgan metrics``).

Generators are passed in as objects (anything with ``z_dim``, ``c_dim`` and
``G(z, c, truncation_psi=..., noise_mode=...)``): this package imports nothing from
``hpcgan.gan``, ``hpcgan.classify`` or the CLI.
"""
