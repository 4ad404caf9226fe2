"""quotient_diffusion: diffusion models on quotient spaces for 3D molecular structure."""

__version__ = "0.1.0"
