"""`python -m tsva.client.healthcheck`: a grpc.health.v1 probe for containers (like grpc_health_probe).

Exit 0 when the server answers as asked, 1 otherwise, with one line saying why. Two modes match the
two questions an orchestrator asks:
  --mode ready (default)  the health status is SERVING (the backend can take work)
  --mode live             the server answers Health.Check at all (SERVING or NOT_SERVING): the
                          process is alive even while its backend is down, so do not restart it
Every option also comes from an environment variable (TSVA_HEALTHCHECK_*), so a Dockerfile
HEALTHCHECK or a Kubernetes exec probe needs no arguments. Health needs no token (it stays open).
"""
from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tsva.client.security import SecurityConfigError, channel_credentials

ENV_PREFIX = "TSVA_HEALTHCHECK_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tsva.client.healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=_env("SERVER", "localhost:50051"),
                        help="HOST:PORT (env TSVA_HEALTHCHECK_SERVER; default %(default)s)")
    parser.add_argument("--service", default=_env("SERVICE", ""),
                        help="health service name; '' is the whole server (env TSVA_HEALTHCHECK_SERVICE)")
    parser.add_argument("--mode", choices=("ready", "live"), default=_env("MODE", "ready"),
                        help="ready: SERVING required; live: any answer (env TSVA_HEALTHCHECK_MODE)")
    parser.add_argument("--timeout", type=float, default=float(_env("TIMEOUT", "4")),
                        help="seconds (env TSVA_HEALTHCHECK_TIMEOUT; default %(default)s)")
    parser.add_argument("--tls-ca", default=_env("TLS_CA"), help="CA of the server's certificate (env TSVA_HEALTHCHECK_TLS_CA)")
    parser.add_argument("--tls-cert", default=_env("TLS_CERT"), help="client certificate for mTLS (env TSVA_HEALTHCHECK_TLS_CERT)")
    parser.add_argument("--tls-key", default=_env("TLS_KEY"), help="its key (env TSVA_HEALTHCHECK_TLS_KEY)")
    parser.add_argument("--server-name", default=_env("SERVER_NAME"),
                        help="name expected in the server's certificate, when it differs from HOST "
                             "(env TSVA_HEALTHCHECK_SERVER_NAME)")
    return parser


def check(server: str, *, service: str = "", mode: str = "ready", timeout: float = 4.0,
          credentials: grpc.ChannelCredentials | None = None, server_name: str | None = None) -> tuple[bool, str]:
    """(healthy, one-line reason) for one Health.Check call."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    channel = (grpc.secure_channel(server, credentials, options) if credentials is not None
               else grpc.insecure_channel(server, options))
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"{server}: health check failed: {exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    healthy = reply.status == health_pb2.HealthCheckResponse.SERVING or mode == "live"
    return healthy, f"{server}: {status} (mode {mode})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        credentials = channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    except SecurityConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    healthy, reason = check(args.server, service=args.service, mode=args.mode, timeout=args.timeout,
                            credentials=credentials, server_name=args.server_name)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
