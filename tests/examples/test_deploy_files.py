"""The deployment examples in examples/deploy/ hold together: each file parses, every aiojobs command in
them is one the CLI accepts, and their stop timeouts leave room for the graceful stop."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path

import pytest

from aiojobs_engine import EngineSettings
from aiojobs_engine._cli._config import load_config
from aiojobs_engine._cli._parser import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "deploy"
GRACE = EngineSettings().shutdown_grace


def accepted(command: str) -> list[str]:
    """The aiojobs arguments of a command line, checked by the real parser."""
    argv = shlex.split(command)
    start = next(i for i, word in enumerate(argv) if word.endswith("aiojobs"))
    args = argv[start + 1:]
    build_parser().parse_args(args)  # raises SystemExit on a command the CLI would refuse
    return args


def systemd_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / name).read_text())
    return unit


def test_the_example_config_file_loads() -> None:
    config = load_config(str(DEPLOY / "aiojobs.toml"))
    assert [g.name for g in config.groups] == ["mail", "reports", "default"]
    assert config.app == "myapp.jobs:engine"


@pytest.mark.parametrize("name", ["aiojobs-worker@.service", "aiojobs.service"])
def test_systemd_units(name: str) -> None:
    service = systemd_unit(name)["Service"]
    args = accepted(service["ExecStart"].replace("%i", "0"))
    assert args[0] in ("worker", "work")
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert float(service["TimeoutStopSec"]) > GRACE + 10
    if args[0] == "work":
        assert "--pidfile" in args and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    else:
        assert "%i" in service["ExecStart"] and service["Restart"] == "always"


def test_supervisord_programs() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read_string((DEPLOY / "supervisord.conf").read_text())
    programs = [s for s in config.sections() if s.startswith("program:")]
    assert programs
    for section in programs:
        program = config[section]
        assert "%(process_num)d" in program["command"] and "process_num" in program["process_name"]
        args = accepted(program["command"].replace("%(process_num)d", "0"))
        assert args[0] == "worker"
        assert program["stopsignal"] == "TERM" and float(program["stopwaitsecs"]) > GRACE
        assert program["stopasgroup"] == "false"  # the worker alone gets the signal


def test_dockerfile_runs_aiojobs_as_pid_1() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert "STOPSIGNAL SIGTERM" in lines
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    argv = json.loads(cmd.removeprefix("CMD "))  # the exec form: no shell between Docker and aiojobs
    assert argv[0] == "aiojobs"
    build_parser().parse_args(argv[1:])
    commented = [json.loads(line.split("CMD ", 1)[1]) for line in lines if line.startswith("#   CMD ")]
    for alternative in commented:
        build_parser().parse_args(alternative[1:])


def test_kubernetes_manifest_key_lines() -> None:
    text = (DEPLOY / "k8s-deployment.yaml").read_text()
    assert "\t" not in text
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert (len(line) - len(line.lstrip())) % 2 == 0, line
    assert re.search(r"^kind: Deployment$", text, re.MULTILINE)
    grace = re.search(r"^ +terminationGracePeriodSeconds: (\d+)$", text, re.MULTILINE)
    assert grace and int(grace.group(1)) > GRACE + 10
    commands = re.findall(r"command: (\[.*\])$", text, re.MULTILINE)
    assert len(commands) == 2  # the manifest's, and the supervisor alternative in the comment
    for command in commands:
        argv = json.loads(command)
        assert argv[0] == "aiojobs"
        build_parser().parse_args(argv[1:])
