"""`tsva fuse|focus|info`: help, argument checks and errors for humans (one line on stderr, no stack
trace, non-zero exit). Each case runs the real `tsva` command as a process; the unreachable-server
case points it at a loopback port nobody listens on."""
import pytest


@pytest.mark.parametrize("code, details, expected, status", [
    ("UNAVAILABLE", "errors resolving nohost.invalid:50051: Domain name not found", "cannot reach the server at h:1", 1),
    ("UNAVAILABLE", "failed to connect to all addresses", "cannot reach the server at h:1", 1),
    ("UNAVAILABLE", "backend down: model not ready", "h:1 is unavailable: backend down", 1),
    ("UNAUTHENTICATED", "missing bearer token", "refused the credentials (--token / --token-file)", 1),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", "within the deadline (--timeout)", 1),
    ("INVALID_ARGUMENT", "tile 't': shot_b.width: 0", "h:1 rejected the input: tile 't': shot_b.width", 2),
    ("INTERNAL", "boom", "h:1 answered INTERNAL: boom", 1),
])
def test_failure_lines_by_status(code, details, expected, status):
    """The wording for statuses a healthy loopback gateway does not produce on demand (pure function)."""
    import grpc
    from tsva.client.errors import TsvaError
    from tsva.client.verbs.common import describe_failure

    line, exit_status = describe_failure(TsvaError(getattr(grpc.StatusCode, code), details, server="h:1"))
    assert expected in line and exit_status == status
