"""`tsva stack up|down|status`: the docker compose stack on a host with a Docker engine.

    tsva stack up [--profile gpu|cpu]     start it and wait until every service is healthy
    tsva stack status                     state and health of every container of the stack
    tsva stack down [--volumes]           stop and remove it
    tsva stack up --dry-run               print what would start, in what order, what it waits for

`docker compose` (the CLI plugin) creates the containers; the `docker` Python package watches
their health through the engine's API, service by service in dependency order, and on failure shows
the failing health check and the container's last log lines. Needs the optional extra
`pip install 'tsva-server[stack]'` (docker, PyYAML).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from tsva.common.errors import Failed
from tsva.server.stack import (StackError, compose_command, default_compose_file, engine_client, load_compose,
                               plan, status_rows, wait_healthy)

HELP = "bring the docker compose stack up or down"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--file", "-f", type=Path, default=default_compose_file(),
                        help="compose file (default: the checkout's docker-compose.yml, %(default)s)")
    parser.add_argument("--profile", action="append", choices=("gpu", "cpu"),
                        help="compose profile: gpu (default) or cpu for hosts without a GPU")
    parser.add_argument("--build", action="store_true", help="up: build the gateway image first")
    parser.add_argument("--volumes", action="store_true", help="down: also remove the named volumes")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (order, waits, commands) without touching an engine")


def run(args: argparse.Namespace) -> int:
    profiles = args.profile or ["gpu"]
    compose = load_compose(args.file)
    project = compose.get("name") or args.file.resolve().parent.name
    services = plan(compose, set(profiles))
    if args.action == "up":
        command = compose_command(args.file, profiles, "up", "-d", *(["--build"] if args.build else []))
    elif args.action == "down":
        command = compose_command(args.file, profiles, "down", *(["--volumes"] if args.volumes else []))
    else:
        command = None
    if args.dry_run:
        print(f"project {project}, profiles {', '.join(profiles)}")
        if command:
            print("run: " + " ".join(command))
        if args.action == "up":
            for service in services:
                after = ", ".join(f"{d} {c.removeprefix('service_')}" for d, c in service.depends_on.items())
                print(f"  wait {service.name}: {service.waits_for} within {service.wait_s:.0f} s"
                      + (f" (after {after})" if after else ""))
        return 0
    client = engine_client()
    if command:
        if shutil.which("docker") is None:
            raise StackError("the docker CLI is not on PATH (docker compose creates the containers)")
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
            raise StackError("the docker compose plugin is missing (`docker compose version` failed)")
        result = subprocess.run(command)
        if result.returncode != 0:
            raise StackError(f"{' '.join(command)} exited with {result.returncode}")
    if args.action == "up":
        print(f"waiting for {len(services)} services to be healthy ...")
        wait_healthy(client, project, services)
        print("stack is up")
    elif args.action == "status":
        rows = status_rows(client, project)
        if not rows:
            print(f"no container of project {project!r}")
        for row in rows:
            print(f"{row[0]:<14} {row[1]:<10} {row[2]:<10} {row[3]}")
    return 0


def describe_error(exc: Exception, args: argparse.Namespace) -> Failed | None:
    """`tsva stack: error: ...`: a StackError in the wording of argparse and the client verbs."""
    return Failed(f"error: {exc}") if isinstance(exc, StackError) else None
