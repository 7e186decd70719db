"""saesuite: sparse autoencoders on CLIP vision models, from activation cache to cross-model comparison."""

__version__ = "0.1.0"
