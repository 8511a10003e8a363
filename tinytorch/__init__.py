"""tinytorch: a PyTorch-like deep learning framework built on NumPy, one course module at a time."""

__version__ = "0.1.0"
