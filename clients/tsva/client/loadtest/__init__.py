"""`tsva loadtest`: concurrent FuseTiles streams (or unary callers) against a gateway, with
simulated tile pairs, latency percentiles, throughput, errors by status code and a concurrency sweep."""
