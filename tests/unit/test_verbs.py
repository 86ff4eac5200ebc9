"""`tsva` verbs: found through the entry-point group `tsva.verbs`, listed without importing torch or
onnxruntime, a missing package named before argparse reads the arguments, and one exit-code rule
(0 ok, 1 failed, 2 bad input, 130 interrupted) for every kind of error, in one wrapper.

In process: the dispatcher is called with the installed entry points, or a filtered set of them
standing in for an install without one distribution (tests/e2e/test_verbs.py runs real installs)."""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import grpc
import pytest
from tsva.common import cli
from tsva.common.errors import BadInput, Failed

HEAVY = ("torch", "onnxruntime", "onnx", "grpc", "scipy")


def verbs_without(distribution: str) -> dict[str, EntryPoint]:
    """The installed verbs as an install without `distribution` would see them."""
    return {name: entry for name, entry in cli.installed_verbs().items() if entry.dist.name != distribution}


# ---- discovery ------------------------------------------------------------------------------

def test_every_product_verb_is_registered_by_its_distribution():
    installed = cli.installed_verbs()
    assert set(installed) == set(cli.KNOWN_VERBS)  # the dev install has every distribution
    for verb, entry in installed.items():
        assert entry.dist.name == cli.KNOWN_VERBS[verb], verb
        assert entry.module.endswith(f".verbs.{verb}") and entry.attr is None  # one module per verb
        module = importlib.import_module(entry.module)
        assert isinstance(module.HELP, str) and module.HELP and "\n" not in module.HELP, verb
        assert callable(module.add_arguments) and callable(module.run), verb


def test_the_tsva_command_comes_with_tsva_common():
    """`tsva` is tsva-common's script: every install (gateway only, training only) has it."""
    from importlib.metadata import distribution

    for name in ("tsva-common", "tsva-client", "tsva-server", "tsva-export"):
        scripts = {e.name: e.value for e in distribution(name).entry_points if e.group == "console_scripts"}
        assert scripts == ({"tsva": "tsva.common.cli:main"} if name == "tsva-common" else {}), name
    assert (Path(sys.executable).parent / "tsva").exists()


def test_listing_shows_every_verb_with_its_help(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert listed == list(cli.KNOWN_VERBS)  # the product's order
    assert "train TSVA or the U-Net baseline" in out and "fuse two out-of-focus shots" in out


@contextlib.contextmanager
def fresh_imports(refuse: tuple[str, ...] = ()):
    """Imports as a new interpreter would do them: the project's modules (but the dispatcher and
    the generated stubs) and HEAVY packages leave sys.modules, and importing a package of `refuse`
    raises ImportError. sys.modules is restored afterwards."""
    saved = dict(sys.modules)
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top in HEAVY or (name.startswith("tsva.") and not name.startswith(("tsva.common", "tsva.v1"))):
            del sys.modules[name]

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in refuse:
                raise ImportError(f"{name} imported while listing the verbs")
            return None

    blocker = Refuse()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)
        sys.modules.clear()
        sys.modules.update(saved)


def test_listing_imports_no_torch_or_onnxruntime():
    with fresh_imports(refuse=HEAVY):
        listing = cli.build_parser([]).format_help()
        assert "train TSVA" in listing and "(cannot be loaded" not in listing, listing  # a HEAVY import fails
        assert {entry.module for entry in cli.installed_verbs().values()} <= set(sys.modules)  # every HELP read


def test_only_the_chosen_verb_is_imported():
    with fresh_imports():
        cli.build_parser(["fuse", "a.png", "b.png"])
        verb_modules = {name for name in sys.modules if ".verbs." in name}
    assert verb_modules == {"tsva.client.verbs.fuse", "tsva.client.verbs.common"}


# ---- a verb whose package is missing ---------------------------------------------------------

def test_a_missing_package_is_named_before_argparse_reads_the_arguments(capsys):
    status = cli.main(["train", "-o", "sim", "--pairs", "2"], verbs=verbs_without("tsva-export"))
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err == ("tsva train: this verb needs the tsva-export package, which is not installed "
                   "(scripts/install.sh dev installs everything)\n")


def test_the_listing_of_a_partial_install_has_only_its_verbs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"], verbs=verbs_without("tsva-export"))
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")]
    assert listed == ["serve", "fuse", "focus", "info", "scan", "loadtest", "stack"]


def test_an_entry_point_left_without_its_module(capsys):
    ghost = EntryPoint(name="ghost", value="tsva.nowhere.verbs.ghost", group=cli.GROUP)
    assert cli.main(["ghost", "--x"], verbs={"ghost": ghost}) == 2
    assert capsys.readouterr().err == "tsva ghost: the package of this verb is not installed (only its metadata is left)\n"


def test_an_unknown_verb_is_argparses_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["nonverb"])
    assert done.value.code == 2 and "invalid choice: 'nonverb'" in capsys.readouterr().err


# ---- one error wrapper, one exit-code rule ---------------------------------------------------

def _verb(exc: BaseException | None = None, status: int = 0, describe_error=None) -> types.ModuleType:
    """A verb module whose run() raises `exc` (or returns `status`)."""
    module = types.ModuleType("fake_verb")

    def run(args):
        if exc is not None:
            raise exc
        return status

    module.run = run
    if describe_error is not None:
        module.describe_error = describe_error
    return module


def _errors():
    from tsva.client.errors import ImageInputError, TsvaError
    from tsva.client.verbs import common as client_common
    from tsva.common.credentials import SecurityConfigError
    from tsva.export.errors import CheckpointError, TsvaExportError
    from tsva.export.verbs import train as train_verb
    from tsva.server.config import ConfigError
    from tsva.server.stack import StackError
    from tsva.server.verbs import stack as stack_verb

    client = client_common.describe_error
    unreachable = TsvaError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", server="h:1")
    return [  # (exception, the verb module's hook, exit status, the line after `tsva v: `)
        (BadInput("--x: bad"), None, 2, "--x: bad"),
        (Failed("it broke"), None, 1, "it broke"),
        (KeyboardInterrupt(), None, 130, "interrupted"),
        (TsvaExportError("--pairs must be >= 1, got 0"), None, 2, "--pairs must be >= 1, got 0"),
        (CheckpointError("checkpoint x.pt: not a readable checkpoint"), None, 2, "checkpoint x.pt: not a readable checkpoint"),
        (ValueError("width must be > 0"), train_verb.describe_error, 2, "width must be > 0"),
        (ConfigError("--port: cannot bind 50051"), None, 2, "--port: cannot bind 50051"),
        (StackError("no Docker engine reachable"), stack_verb.describe_error, 1, "error: no Docker engine reachable"),
        (unreachable, client, 1, "error: cannot reach the server at h:1"),
        (TsvaError(grpc.StatusCode.INVALID_ARGUMENT, "tile 't': shot_b.width: 0", server="h:1"), client, 2,
         "error: h:1 rejected the input: tile 't': shot_b.width: 0"),
        (ImageInputError("shot_a: no such file"), client, 2, "error: shot_a: no such file"),
        (SecurityConfigError("--tls-ca: cannot read 'x.pem'"), client, 2, "error: --tls-ca: cannot read 'x.pem'"),
        (FileNotFoundError(2, "No such file or directory", "o.png"), client, 2, "error: No such file or directory 'o.png'"),
        # Without a verb's hook, the package errors keep their class's status.
        (unreachable, None, 1, str(unreachable)),
        (ImageInputError("shot_b: not an image"), None, 2, "shot_b: not an image"),
    ]


@pytest.mark.parametrize("case", range(len(_errors())))
def test_exit_status_and_line_of_each_error_kind(case, capsys):
    exc, hook, status, message = _errors()[case]
    assert cli.run_verb("v", _verb(exc, describe_error=hook), types.SimpleNamespace()) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"tsva v: {message}") and err.count("\n") == 1, err


def test_success_is_the_verbs_own_status(capsys):
    assert cli.run_verb("v", _verb(status=0), types.SimpleNamespace()) == 0
    assert cli.run_verb("v", _verb(status=1), types.SimpleNamespace()) == 1  # e.g. a parity check that failed
    assert cli.run_verb("v", _verb(status=None), types.SimpleNamespace()) == 0
    assert capsys.readouterr().err == ""


def test_a_bug_keeps_its_traceback():
    """An exception that is no VerbError and that the verb's hook does not word is not hidden."""
    from tsva.client.verbs import common as client_common

    with pytest.raises(RuntimeError, match="bug"):
        cli.run_verb("v", _verb(RuntimeError("bug"), describe_error=client_common.describe_error),
                     types.SimpleNamespace())
