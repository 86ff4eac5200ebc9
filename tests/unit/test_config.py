"""The gateway's configuration: flags, their aliases and TSVA_* environment variables."""
import pytest
from tsva.server import config


def test_triton_url_alias_and_plural_flag_agree():
    plural = config.parse(["--backend", "triton", "--triton-urls", "a:1,b:2"])
    alias = config.parse(["--backend", "triton", "--triton-url", "a:1,b:2"])
    assert plural.triton_url_list == alias.triton_url_list == ["a:1", "b:2"]


def test_environment_sets_a_default_and_a_flag_overrides_it(monkeypatch):
    monkeypatch.setenv("TSVA_PORT", "6000")
    assert config.parse([]).port == 6000
    assert config.parse(["--port", "7000"]).port == 7000


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("TSVA_PORT", "fifty")
    with pytest.raises(config.ConfigError, match="TSVA_PORT"):
        config.parse([])


def test_bad_triton_target_is_a_config_error():
    with pytest.raises(config.ConfigError) as caught:
        config.parse(["--backend", "triton", "--triton-urls", "foo"])
    assert str(caught.value) == "--triton-urls: 'foo' is not HOST:PORT"
