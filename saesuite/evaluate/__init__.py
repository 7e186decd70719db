"""Evaluation of one SAE on held-out rows: streaming statistics, alignment, fidelity, figures."""
