"""Comparing two models' activations and SAE codes: CKA, kNN, top-k overlap, pairing, chance, figures."""
