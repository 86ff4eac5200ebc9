"""`tsva fuse|focus|info`: help, argument checks and errors for humans (one line on stderr, no stack
trace, non-zero exit). Each case runs the real `tsva` command as a process; the unreachable-server
case points it at a loopback port nobody listens on."""
import socket
import subprocess
import sys

import pytest
from PIL import Image as PILImage
from skimage import data


def tsva(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "tsva.common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def one_clear_line(stderr: str, verb: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"tsva {verb}: error: ")
    return lines[0]


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def shots(tmp_path):
    tile = data.astronaut()[:64, :80]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PILImage.fromarray(tile).save(a)
    PILImage.fromarray(tile[::-1].copy()).save(b)
    return a, b


@pytest.mark.parametrize("verb, words", [
    ("fuse", ["SHOT_A", "SHOT_B", "--output", "--server", "--tls-ca", "--token-file", "--timeout"]),
    ("focus", ["PLANE", "--z", "--z-step", "--json", "--server"]),
    ("info", ["--json", "--server", "localhost:50051"]),
])
def test_help(verb, words):
    code, out, err = tsva(verb, "--help")
    assert code == 0, err
    for word in words:
        assert word in out


def test_unreachable_server(shots, closed_port):
    for args in (["info"], ["fuse", *shots, "-o", shots[0].parent / "out.png"], ["focus", *shots, "--z", 0, 1]):
        code, out, err = tsva(*args, "--server", f"127.0.0.1:{closed_port}")
        line = one_clear_line(err, args[0])
        assert code == 1
        assert f"cannot reach the server at 127.0.0.1:{closed_port}" in line
    assert not (shots[0].parent / "out.png").exists()


def test_bad_paths_and_images_fail_before_any_call(tmp_path, shots, closed_port):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00" * 64)
    cases = [
        (["fuse", tmp_path / "missing.png", shots[1], "-o", tmp_path / "o.png"], "shot_a: no such file"),
        (["fuse", shots[0], junk, "-o", tmp_path / "o.png"], "shot_b: "),
        (["fuse", *shots, "-o", tmp_path / "o.jpg"], "unknown image type '.jpg'"),
        (["fuse", *shots, "-o", tmp_path / "no" / "o.png"], "does not exist"),
        (["focus", *shots, "--z", 0], "--z: 1 values for 2 planes"),
        (["focus", shots[0], tmp_path, "--z-step", 1], "planes[1]: "),
        (["info", "--tls-ca", tmp_path / "missing.pem"], "--tls-ca: cannot read"),
    ]
    for args, expected in cases:
        # The server address is unreachable: these must fail on the input, not on the connection.
        code, out, err = tsva(*args, "--server", f"127.0.0.1:{closed_port}")
        assert code == 2, (args, err)
        assert expected in one_clear_line(err, args[0]), (args, err)


def test_focus_needs_z():
    code, out, err = tsva("focus", "a.png", "b.png")
    assert code == 2 and "--z" in err  # argparse's usage error
