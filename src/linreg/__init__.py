"""linreg: the whole PyTorch workflow on linear regression, with Lightning and Hydra."""

__version__ = "0.1.0"
