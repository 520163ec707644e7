"""modelprint: prove who owns a trained neural network."""

__version__ = "0.1.0"
