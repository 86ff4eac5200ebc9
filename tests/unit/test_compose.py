"""docker-compose.yml, Prometheus and Grafana provisioning checked against the code: ports, flags,
model names, service names in scrape targets, mounted paths, dashboard metrics. The files are
parsed, the gateway's flags are read from the real `tsva serve --help` and parsed by the gateway's
own config parser, and the dashboard's metric names are looked up on a real gateway's /metrics
endpoint. Where a Docker engine and a compose implementation run, the gateway and Prometheus
services are brought up for real and a scrape is checked (the last test; what it replaces and why
is in its docstring)."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import yaml
from tsva.client import healthcheck
from tsva.server import config as gateway_config

from tests.support.compose import SERVICES, service_of_kind
from tests.support.paths import REPO_ROOT


def test_every_service_has_a_healthcheck():
    for name, spec in SERVICES.items():
        test = (spec.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_mounted_host_paths_exist():
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"{name}: {source}"
    assert (REPO_ROOT / SERVICES["gateway"]["build"] / "Dockerfile").exists()


def test_grafana_provisioning_is_consistent():
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1]: REPO_ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")}
    datasources = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "datasources/prometheus.yml").read_text())
    source = datasources["datasources"][0]
    assert source["url"] == f"http://prometheus:{SERVICES['prometheus']['ports'][0].rsplit(':', 1)[-1]}"
    providers = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "dashboards/tsva.yml").read_text())
    dashboards_path = providers["providers"][0]["options"]["path"]
    assert dashboards_path in mounts
    dashboard = json.loads((mounts[dashboards_path] / "tsva.json").read_text())
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == dashboards_path and (mounts[dashboards_path] / Path(home).name).exists()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in ("tiles per second", "megapixels", "p50 / p99", "batch size", "queue depth", "errors",
                   "triton queue and compute", "gpu utilisation"):
        assert wanted in titles


def test_tls_override_uses_the_gateways_env_names():
    override = yaml.safe_load((REPO_ROOT / "deploy/compose.tls.yml").read_text())
    known = {f.metadata["option"].env for f in fields(gateway_config.Config)}
    known |= {healthcheck.ENV_PREFIX + a.dest.upper() for a in healthcheck.build_parser()._actions}
    for name, spec in override["services"].items():
        assert name in SERVICES and service_of_kind(SERVICES[name]["profiles"][0], "gateway")[0] == name
        assert set(spec["environment"]) <= known, set(spec["environment"]) - known
        mounted = {f"/run/secrets/{secret}" for secret in spec["secrets"]}  # compose's secret mount point
        assert set(spec["environment"].values()) - {"localhost"} <= mounted
        assert set(spec["secrets"]) <= set(override["secrets"])
