"""Dockerfile and .dockerignore, read statically (no Docker daemon here)."""

from __future__ import annotations

import json
import re

from deploy_helpers import REPO

from extproc.cli import build_parser

DOCKERFILE = (REPO / "Dockerfile").read_text()
DOCKERIGNORE = (REPO / ".dockerignore").read_text().splitlines()


def instructions(name: str) -> list[str]:
    """Arguments of every NAME instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name} (.+)$", joined, re.MULTILINE)]


def final_stage() -> str:
    return DOCKERFILE.rsplit("\nFROM ", 1)[1]


def test_based_on_python_311_slim() -> None:
    (default,) = [a for a in instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", default)
    assert all(base.startswith("${PYTHON_IMAGE}") for base in instructions("FROM"))


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = instructions("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert final_stage().index("USER ") > final_stage().index("RUN pip install")


def test_installs_the_project_and_checks_both_commands() -> None:
    (install,) = [r for r in instructions("RUN") if "pip install" in r]
    assert "envoy --version" in install
    assert "extproc --help" in install


def test_entrypoint_is_the_cli_and_the_default_command_parses() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["extproc"]
    (cmd,) = instructions("CMD")
    assert build_parser().parse_args(json.loads(cmd)).command == "up"


def test_exposes_listener_and_extproc_ports() -> None:
    ports = {int(p) for line in instructions("EXPOSE") for p in line.split()}
    assert {8080, 50051} <= ports
    assert 9901 not in ports, "Envoy's admin API stays on loopback"


def test_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    rules = [line.strip() for line in DOCKERIGNORE if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore should be an allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for copy in instructions("COPY"):
        if copy.startswith("--from="):
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
    # pyproject.toml's `readme` is read while building the wheel.
    assert "README.md" in allowed
