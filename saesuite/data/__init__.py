"""Datasets: where images come from (ImageNet, CIFAR-10, the offline fixture)."""
