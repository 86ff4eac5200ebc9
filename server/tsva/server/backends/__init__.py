"""Inference backends: where batches of patches are run through the network."""
