"""Shared defaults (they live in fmnist_jax/defaults.py); configs/mlp.py, cnn.py, ... import and
adjust them, and `--config configs/default.py` trains them."""
from fmnist_jax.defaults import get_config

__all__ = ['get_config']
