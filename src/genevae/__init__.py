"""genevae: interpretable deep generative models of gene expression (Tybalt, VEGA, GPO-VAE)."""

__version__ = "0.1.0"
