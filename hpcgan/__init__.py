"""hpcgan: GAN augmentation experiments for chest X-rays on HPC clusters."""

__version__ = "0.1.0"
