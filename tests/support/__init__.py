"""Harnesses shared by tests and benchmarks: real processes (gateway, tritonserver, Docker engine),
small ONNX models, a corpus of hostile files, Prometheus reading. Imported as `tests.support.X`."""
