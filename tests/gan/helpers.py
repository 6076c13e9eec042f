"""Small helpers shared by the GAN tests: tiny networks that run in a blink on a CPU."""

from __future__ import annotations

import torch

from hpcgan.gan import Discriminator, Generator

# 32 px, <= 32 channels, 2 mapping layers: the whole G is ~60k parameters.
TINY = dict(img_resolution=32, channel_base=512, channel_max=32)
Z_DIM = W_DIM = 32


def make_pair(c_dim: int = 0, impl: str = "native", seed: int = 0, dtype=torch.float32, noise_strength: float = 0.2,
              **overrides):
    """A tiny (G, D) pair; noise strengths are set non-zero so noise paths matter."""
    torch.manual_seed(seed)
    kw = {**TINY, **overrides}
    G = Generator(z_dim=Z_DIM, c_dim=c_dim, w_dim=W_DIM, mapping_layers=2, impl=impl, **kw)
    D = Discriminator(c_dim=c_dim, mapping_layers=2, impl=impl, **kw)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise_strength)
    return G.to(dtype), D.to(dtype)


def onehot(labels, c_dim: int, dtype=torch.float32) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), c_dim).to(dtype)




def tiny_train_config(data, outdir, **overrides):
    """A TrainConfig for a tiny StyleGAN2 run on 32 px phantom shards (a step takes ~0.1-0.3 s on 2 cores)."""
    from hpcgan.gan.config import TrainConfig

    kw = dict(data=str(data), outdir=str(outdir), kimg=0.048, batch=8, z_dim=Z_DIM, w_dim=W_DIM,
              channel_base=TINY["channel_base"], channel_max=TINY["channel_max"], mapping_layers=2,
              tick_kimg=0.016, snap=1, ema_kimg=0.05, ada_kimg=1, ada_interval=1, aug="ada", aug_p=0.05,
              grid_cols=4, grid_rows=2, progress=False, seed=1)
    kw.update(overrides)
    return TrainConfig(**kw)


def cli(*args, mpirun: list[str] | None = None, np_: int = 2, timeout: float = 180, check: bool = True):
    """Run ``python -m hpcgan.cli ARGS`` (under ``mpirun -np np_`` when given)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "hpcgan.cli", *map(str, args)]
    if mpirun:
        cmd = [*mpirun, "-np", str(np_), *cmd]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


TINY_FLAGS = ["--kimg", "0.048", "--batch", "8", "--tick-kimg", "0.016", "--snap", "1", "--no-progress", "--seed", "1"]
