"""The metrics stage: FID and KID (``fid``, NVlabs' procedure), image similarity and the memorisation check
(``similarity``), generated-vs-real comparison of shard sets (``compare``, ``hpcgan metrics``).

Real images travel as ``realset.RealSet`` values (folder, split, classes), so every metric compares a
generator's images with real images of the same classes.

Generators are passed in as objects (anything with ``z_dim``, ``c_dim`` and
``G(z, c, truncation_psi=..., noise_mode=...)``): this package imports nothing from
``hpcgan.gan``, ``hpcgan.classify`` or the CLI.
"""
