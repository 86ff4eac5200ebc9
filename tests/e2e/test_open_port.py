"""The start-up WARNING and the tsva_plaintext_open_port metric for a gateway whose gRPC port is
plaintext, token-less and not on loopback. In process (tsva.server.app.warn_if_open with a real
Config and a fresh Prometheus registry): the tests' gateways bind 127.0.0.1 only, so a process bound
to 0.0.0.0 is not started here; the loopback case is also checked on a real gateway process."""
import pytest

from tests.support.metrics import metric


@pytest.mark.slow
def test_loopback_gateway_reports_no_open_port(gateway):
    assert metric(gateway.metrics_url, "tsva_plaintext_open_port") == 0.0
    assert "plaintext and needs no token" not in gateway.logs()
