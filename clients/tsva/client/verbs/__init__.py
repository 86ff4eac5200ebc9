"""`tsva` verbs of the client: fuse, focus, info, scan, loadtest (common.py: what they share)."""
