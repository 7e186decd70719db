"""What a run shows: the paper, the feature explorer, provenance and the comparison of runs."""
