"""The start-up WARNING and the tsva_plaintext_open_port metric for a gateway whose gRPC port is
plaintext, token-less and not on loopback. In process (tsva.server.app.warn_if_open with a real
Config and a fresh Prometheus registry): the tests' gateways bind 127.0.0.1 only, so a process bound
to 0.0.0.0 is not started here; the loopback case is also checked on a real gateway process."""
import logging

import pytest
from prometheus_client import CollectorRegistry
from tsva.server.app import warn_if_open
from tsva.server.config import Config
from tsva.server.metrics import Metrics


@pytest.mark.parametrize("host, tls, token, exposed", [
    ("0.0.0.0", False, None, True), ("::", False, None, True), ("gateway.example", False, None, True),
    ("0.0.0.0", True, None, False), ("0.0.0.0", False, "/etc/tsva/token", False),
    ("127.0.0.1", False, None, False), ("::1", False, None, False), ("localhost", False, None, False),
])
def test_open_port_warning_and_metric(caplog, host, tls, token, exposed):
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with caplog.at_level(logging.WARNING, logger="tsva.server"):
        warn_if_open(Config(host=host, token_file=token), 50051, tls, metrics)
    assert registry.get_sample_value("tsva_plaintext_open_port") == (1.0 if exposed else 0.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if exposed:
        assert len(warnings) == 1 and "plaintext" in warnings[0]
        assert all(flag in warnings[0] for flag in ("--token-file", "--tls-cert", "--host 127.0.0.1"))
    else:
        assert not warnings
