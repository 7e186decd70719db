"""Sparse autoencoders: the model and its variants, the loss terms, the trainer and its recipes."""
