"""The fallback console of an embedded engine (``_console``), on loggers of the test's own.

Each test builds a small logger tree (a root at WARNING, as Python's is, and a package
logger under it with its NullHandler), so that pytest's own handlers on the real root logger
play no part; the engine's runs use the same function on the real package logger (see
tests/contrib/test_console_logging.py).
"""

from __future__ import annotations

import io
import logging

import pytest

from aiojobs_engine import ConfigurationError
from aiojobs_engine._console import ConsoleHandler, check_log_level, console_logging
from aiojobs_engine._log import Event, job_extra


def tree() -> tuple[logging.Logger, logging.Logger]:
    root = logging.RootLogger(logging.WARNING)
    package = logging.Logger("aiojobs_engine")
    package.parent = root
    package.addHandler(logging.NullHandler())
    return root, package


def consoles(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, ConsoleHandler)]


class Stderr:
    """What was written to ``sys.stderr`` (pytest's capture of it: the console looks
    ``sys.stderr`` up at each record, so it writes there)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._seen = ""

    def getvalue(self) -> str:
        self._seen += self._capsys.readouterr().err
        return self._seen


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Stderr:
    return Stderr(capsys)


def test_nothing_configured_gets_one_console_for_as_long_as_it_runs(stderr: Stderr) -> None:
    _, package = tree()
    with console_logging("info", package):
        assert len(consoles(package)) == 1 and package.level == logging.INFO
        with console_logging("warning", package):  # a second engine, or running() inside a lifespan
            assert len(consoles(package)) == 1
        assert len(consoles(package)) == 1  # the first user still runs
        package.info("job %s (%s) completed", 7, "send_welcome",
                     extra=job_extra(Event.JOB_COMPLETED, 7, "send_welcome", "email", 1))
        try:
            raise ValueError("the mail server said no")
        except ValueError:
            package.exception("job %s (%s) attempt %s failed for good", 8, "send_welcome", 3,
                              extra=job_extra(Event.JOB_FAILED, 8, "send_welcome", "email", 3))
        package.debug("below the level asked for")
    assert consoles(package) == [] and package.level == logging.NOTSET  # as it was
    package.warning("after the run")
    lines = stderr.getvalue().splitlines()
    assert lines[0].endswith("INFO aiojobs_engine: job 7 (send_welcome) completed "
                             "[event=job.completed job_id=7 job=send_welcome queue=email attempt=1]"), lines
    assert lines[1].endswith("ERROR aiojobs_engine: job 8 (send_welcome) attempt 3 failed for good "
                             "[event=job.failed job_id=8 job=send_welcome queue=email attempt=3]"), lines
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: the mail server said no"
    assert "below the level" not in stderr.getvalue() and "after the run" not in stderr.getvalue()


def test_an_application_handler_anywhere_on_the_chain_means_no_console(stderr: Stderr) -> None:
    root, package = tree()
    root.addHandler(logging.StreamHandler(io.StringIO()))  # logging.basicConfig(), a dictConfig, caplog
    with console_logging("info", package):
        assert consoles(package) == [] and package.level == logging.NOTSET
    root.handlers.clear()
    package.addHandler(logging.StreamHandler(io.StringIO()))  # or on the package logger itself
    with console_logging("info", package):
        assert consoles(package) == []
    assert stderr.getvalue() == ""


def test_a_logger_that_does_not_propagate_is_judged_by_its_own_handlers(stderr: Stderr) -> None:
    root, package = tree()
    root.addHandler(logging.StreamHandler(io.StringIO()))
    package.propagate = False  # root's handler never sees the package's records
    with console_logging("warning", package):
        assert len(consoles(package)) == 1
        package.warning("seen")
    assert "seen" in stderr.getvalue()


def test_the_console_stands_down_when_the_application_configures_logging_later(stderr: Stderr) -> None:
    root, package = tree()
    with console_logging("warning", package):
        package.warning("before")
        theirs = io.StringIO()
        root.addHandler(logging.StreamHandler(theirs))  # basicConfig() in the app's own start-up code
        package.warning("after")
    assert "before" in stderr.getvalue() and "after" not in stderr.getvalue()  # never twice
    assert "after" in theirs.getvalue()


def test_a_level_the_application_set_on_the_package_logger_is_kept(stderr: Stderr) -> None:
    _, package = tree()
    package.setLevel(logging.ERROR)
    with console_logging("info", package):
        package.warning("filtered by the application's level")
        package.error("shown")
    assert package.level == logging.ERROR
    assert "shown" in stderr.getvalue() and "filtered" not in stderr.getvalue()


def test_none_installs_nothing_and_bad_levels_are_refused(stderr: Stderr) -> None:
    _, package = tree()
    with console_logging(None, package):
        assert consoles(package) == []
        package.error("nobody hears this")
    assert stderr.getvalue() == ""
    assert check_log_level("INFO") == logging.INFO and check_log_level(" debug ") == logging.DEBUG
    assert check_log_level(15) == 15 and check_log_level(None) is None
    for bad in ("verbose", True, -1, 2.5):
        with pytest.raises(ConfigurationError, match=r"log_level must be one of 'debug', 'info'.* got "):
            check_log_level(bad)
