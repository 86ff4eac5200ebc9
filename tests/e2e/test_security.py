"""Security of the gateway's gRPC port, end to end: a real gateway process on loopback with TLS,
mutual TLS or bearer tokens; the SDK, the CLI and the load tester connecting in each mode; bad
certificate, key and token files refused at start-up. Certificates are generated per test session
with `cryptography` (nothing secret is stored in the repository)."""
from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2
from tsva.client import Client, security
from tsva.client.errors import TsvaError
from tsva.server import security as server_security

from tests.support.gateway import health_status, start_gateway

TOKEN = "s3cr3t-token-for-tests"
SMALL_GATEWAY = dict(patch_size=64, patch_overlap=16, max_batch=8)


# ---- a throw-away PKI ---------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _issue(subject: str, issuer_key, issuer_name: x509.Name | None, *, ca: bool, server: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer_name or _name(subject)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path
    token_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _issue("tsva test CA", None, None, ca=True, server=False)
    server_key, server_cert = _issue("localhost", ca_key, ca.subject, ca=False, server=True)
    client_key, client_cert = _issue("scanner-1", ca_key, ca.subject, ca=False, server=False)
    other_ca_key, other_ca = _issue("another CA", None, None, ca=True, server=False)
    other_key, other_cert = _issue("intruder", other_ca_key, other_ca.subject, ca=False, server=False)
    token_file = d / "tokens"
    token_file.write_text(f"# accepted bearer tokens\n{TOKEN}\n")
    return Pki(_write_cert(d / "ca.pem", ca), _write_cert(d / "server.pem", server_cert),
               _write_key(d / "server.key", server_key), _write_cert(d / "client.pem", client_cert),
               _write_key(d / "client.key", client_key), _write_cert(d / "other-ca.pem", other_ca),
               _write_cert(d / "other-client.pem", other_cert), _write_key(d / "other-client.key", other_key),
               token_file)


def _tls(pki: Pki, client: bool = False) -> grpc.ChannelCredentials:
    return security.channel_credentials(pki.ca, pki.client_cert if client else None,
                                        pki.client_key if client else None)


def _tsva(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tsva.common.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return a, (a // 2 + 40).astype(np.uint8)


# ---- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_gateway(pki, tiny_model):
    with start_gateway(tiny_model, tls_cert=pki.server_cert, tls_key=pki.server_key, credentials=_tls(pki),
                       **SMALL_GATEWAY) as gw:
        yield gw


def test_tls_refuses_plaintext(tls_gateway):
    assert health_status(tls_gateway.address) is None  # no answer over a plaintext channel
    with Client(tls_gateway.address, timeout=5) as client, pytest.raises(TsvaError) as err:
        client.info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_tls_sdk_fuses_and_wrong_ca_is_refused(tls_gateway, pki):
    shot_a, shot_b = _pair()
    with Client(tls_gateway.address, tls_ca=pki.ca, timeout=30) as client:
        result = client.fuse(shot_a, shot_b, tile_id="t1")
    assert result.image.shape == shot_a.shape
    # A client that trusts another CA does not accept the server's certificate.
    with Client(tls_gateway.address, tls_ca=pki.other_ca, timeout=5) as client, pytest.raises(TsvaError) as err:
        client.info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_tls_cli_info(tls_gateway, pki):
    done = _tsva("info", "--server", tls_gateway.address, "--tls-ca", str(pki.ca), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == "embedded"
    plain = _tsva("info", "--server", tls_gateway.address, "--timeout", "5")
    assert plain.returncode != 0 and "Traceback" not in plain.stderr
    assert "--tls-ca" in plain.stderr  # the server runs; the message says what the client lacks


# ---- mutual TLS -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls_gateway(pki, tiny_model):
    with start_gateway(tiny_model, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca,
                       credentials=_tls(pki, client=True), **SMALL_GATEWAY) as gw:
        yield gw


def test_mtls_accepts_only_clients_of_its_ca(mtls_gateway, pki):
    address = mtls_gateway.address
    assert health_status(address, credentials=_tls(pki, client=True)) == health_pb2.HealthCheckResponse.SERVING
    # No client certificate, or one from another CA: the handshake fails.
    assert health_status(address, credentials=_tls(pki)) is None
    foreign = security.channel_credentials(pki.ca, pki.other_client_cert, pki.other_client_key)
    assert health_status(address, credentials=foreign) is None
    shot_a, shot_b = _pair(1)
    with Client(address, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key, timeout=30) as client:
        assert client.fuse(shot_a, shot_b).image.shape == shot_a.shape
    with Client(address, tls_ca=pki.ca, tls_cert=pki.other_client_cert, tls_key=pki.other_client_key,
                timeout=5) as client, pytest.raises(TsvaError) as err:
        client.info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_mtls_cli_and_healthcheck(mtls_gateway, pki):
    done = _tsva("info", "--server", mtls_gateway.address, "--tls-ca", str(pki.ca), "--tls-cert",
                 str(pki.client_cert), "--tls-key", str(pki.client_key), "--json")
    assert done.returncode == 0, done.stderr
    # The container probe with the same files (as a Kubernetes exec probe would run it).
    probe = subprocess.run([sys.executable, "-m", "tsva.client.healthcheck", "--server", mtls_gateway.address,
                            "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key",
                            str(pki.client_key)], capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    assert "SERVING" in probe.stdout
    refused = subprocess.run([sys.executable, "-m", "tsva.client.healthcheck", "--server", mtls_gateway.address,
                              "--tls-ca", str(pki.ca), "--timeout", "3"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    no_certificate = _tsva("info", "--server", mtls_gateway.address, "--tls-ca", str(pki.ca), "--timeout", "5")
    assert no_certificate.returncode == 1 and "--tls-cert" in no_certificate.stderr
    load = _tsva("loadtest", "--server", mtls_gateway.address, "--tls-ca", str(pki.ca), "--tls-cert",
                 str(pki.client_cert), "--tls-key", str(pki.client_key), "--concurrency", "2", "--count", "4",
                 "--warmup", "0", "--tile-size", "64x48", "--json")
    assert load.returncode == 0, load.stderr
    assert json.loads(load.stdout)["ok"] == 4


# ---- bearer tokens --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def token_gateway(pki, tiny_model):
    with start_gateway(tiny_model, token_file=pki.token_file, **SMALL_GATEWAY) as gw:
        yield gw


@pytest.mark.parametrize("token, expected", [(None, "missing bearer token"), ("wrong-token", "invalid bearer token")])
def test_token_required(token_gateway, token, expected):
    shot_a, shot_b = _pair(2)
    with Client(token_gateway.address, token=token, timeout=10) as client:
        for call in (client.info, lambda: client.fuse(shot_a, shot_b)):
            with pytest.raises(TsvaError) as err:
                call()
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert expected in err.value.message
        # A stream without the token fails as a whole with UNAUTHENTICATED for each tile taken.
        results = []
        with pytest.raises(TsvaError) as err:
            for result in client.fuse_stream([(shot_a, shot_b)], window=1):
                results.append(result)
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert all(r.error is not None and r.error.code == grpc.StatusCode.UNAUTHENTICATED for r in results)


def test_token_accepted_and_health_open(token_gateway, pki):
    assert health_status(token_gateway.address) == health_pb2.HealthCheckResponse.SERVING  # no token needed
    shot_a, shot_b = _pair(3)
    with Client(token_gateway.address, token=TOKEN, timeout=30) as client:
        assert client.fuse(shot_a, shot_b).image.shape == shot_a.shape
        results = list(client.fuse_stream([(shot_a, shot_b)] * 3, window=2))
    assert len(results) == 3 and all(r.ok for r in results)
    done = _tsva("info", "--server", token_gateway.address, "--token-file", str(pki.token_file), "--json")
    assert done.returncode == 0, done.stderr
    refused = _tsva("info", "--server", token_gateway.address)
    assert refused.returncode != 0 and ("UNAUTHENTICATED" in refused.stderr or "credentials" in refused.stderr)
    assert TOKEN not in token_gateway.logs()  # rejected calls are logged, tokens never


def test_loadtest_with_token(token_gateway, pki, tmp_path):
    args = ["loadtest", "--server", token_gateway.address, "--concurrency", "1", "--window", "2",
            "--count", "3", "--warmup", "0", "--tile-size", "64x48", "--json"]
    done = _tsva(*args, "--token-file", str(pki.token_file))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 3
    refused = _tsva(*args)
    assert refused.returncode == 1
    assert "refused the credentials" in refused.stderr


# ---- start-up refusals: never a server running open by accident --------------------------------

def _bad_files(pki: Pki, tmp: Path) -> dict[str, tuple[dict, str]]:
    empty = tmp / "empty-token"
    empty.write_text("\n# nothing here\n")
    return {
        "missing cert": (dict(tls_cert=tmp / "nope.pem", tls_key=pki.server_key), "--tls-cert"),
        "key of another cert": (dict(tls_cert=pki.server_cert, tls_key=pki.client_key), "does not match"),
        "client CA without server cert": (dict(tls_client_ca=pki.ca), "--tls-cert"),
        "empty token file": (dict(token_file=empty), "--token-file"),
        "missing token file": (dict(token_file=tmp / "no-such-token"), "--token-file"),
    }


@pytest.mark.slow
def test_gateway_refuses_to_start_with_bad_security_files(pki, tiny_model, tmp_path):
    for case, (flags, expected) in _bad_files(pki, tmp_path).items():
        with start_gateway(tiny_model, wait=False, **flags) as gw:
            status = gw.process.wait(60)
        assert status != 0, case
        assert expected in gw.logs(), f"{case}: {gw.logs()[-2000:]}"
        assert "serving tsva.v1" not in gw.logs(), case


def test_security_module_errors_name_the_file(pki, tmp_path):
    """In-process checks of the same functions, including cases a process test cannot tell apart."""
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases = [
        (lambda: server_security.server_credentials(pki.server_cert, None, None), "--tls-key"),
        (lambda: server_security.server_credentials(pki.server_cert, encrypted, None), "encrypted"),
        (lambda: server_security.server_credentials(not_pem, pki.server_key, None), "no PEM certificate"),
        (lambda: server_security.server_credentials(pki.server_cert, pki.server_key, not_pem), "--tls-client-ca"),
        (lambda: security.channel_credentials(None, pki.client_cert, None), "--tls-key"),
        (lambda: security.channel_credentials(tmp_path / "gone.pem"), "gone.pem"),
        (lambda: security.token_metadata("two words"), "token"),
        (lambda: security.token_metadata(""), "empty"),
    ]
    for call, expected in cases:
        with pytest.raises(server_security.SecurityConfigError, match=expected):
            call()
    assert server_security.server_credentials(None, None, None) is None
    assert server_security.auth_interceptors(None) == []
    assert security.token_metadata(TOKEN) == (("authorization", f"Bearer {TOKEN}"),)
    assert server_security.read_tokens(pki.token_file) == [TOKEN]
