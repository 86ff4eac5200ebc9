"""`tsva` verbs of the training side: simulate, train, evaluate, export, quantize (common.py: shared options)."""
