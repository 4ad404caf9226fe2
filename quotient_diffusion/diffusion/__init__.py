"""Interpolants, symmetry treatments, samplers and the diffusion model."""

from .interpolants import Interpolant, LinearInterpolant, PolynomialVP, get_interpolant
from .model import AuxiliaryLoss, DiffusionModel
from .samplers import SamplerConfig, prior_sample, resolve_sampler, sample, time_grid
from .treatments import (
    TREATMENTS,
    AF3Alignment,
    Conventional,
    GeoDiffAlignment,
    Quotient,
    Treatment,
    get_treatment,
)

__all__ = [
    "Interpolant",
    "LinearInterpolant",
    "PolynomialVP",
    "get_interpolant",
    "DiffusionModel",
    "AuxiliaryLoss",
    "SamplerConfig",
    "resolve_sampler",
    "time_grid",
    "prior_sample",
    "sample",
    "Treatment",
    "Conventional",
    "GeoDiffAlignment",
    "AF3Alignment",
    "Quotient",
    "TREATMENTS",
    "get_treatment",
]
