"""Shared fixtures (the mini inventory copied into a scratch project, a CLI runner) and the two tiers.

The default suite holds every behaviour test, each on the smallest data that shows it. Tests marked
``scale`` (the whole 50-system example wave, anything whose point is size or repetition) run only
with ``--scale`` (``bash scripts/test.sh --scale``), which also repeats the failover drills
(``GOVCLOUD_DRILL_RUNS``, see scripts/test.sh). See docs/testing.md.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import settings

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--scale", action="store_true", default=False,
                     help="also run the scale tier (tests marked `scale`): the whole example wave, repeated drills")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --scale, tests marked ``scale`` are deselected (reported as such, never silently skipped)."""
    if config.getoption("--scale"):
        return
    scale = [item for item in items if item.get_closest_marker("scale") is not None]
    if scale:
        config.hook.pytest_deselected(items=scale)
        items[:] = [item for item in items if item.get_closest_marker("scale") is None]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With xdist (``-n 2``, the whole suite in scripts/test.sh): one worker runs every integration test,
    in collection order, on the one cloud and lab; the other runs the unit tests, a module at a time.

    A scope per worker unit is xdist's LoadScopeScheduling; the integration tests are one scope. (Its
    ``xdist_group`` marks do not group under pytest 9: xdist 3.8 renames ``item._nodeid``, which pytest 9
    no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationInOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/integration" if nodeid.startswith("tests/integration/") else nodeid.split("::")[0]

    return IntegrationInOneWorker(config, log)


_NICED = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The xdist worker that runs unit tests runs them at the lowest priority (nice 19), so they take only
    the CPU the integration tests leave: beside the integration worker at equal priority they slowed
    the cloud's start and the drills by about as much time as they saved (docs/testing.md)."""
    global _NICED
    if not _NICED and "PYTEST_XDIST_WORKER" in os.environ and "tests/integration/" not in item.nodeid:
        os.nice(19)
        _NICED = True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch govcloud project holding a copy of tests/data/mini/inventories."""
    shutil.copytree(DATA / "mini" / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """Run `govcloud ARGS...` in-process and capture exit code, stdout and stderr separately."""
    from govcloud.cli.main import cli

    def run(*args: str) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


# Timing is measured in bench/, never asserted in a test: no Hypothesis example fails for being slow
# (the unit tests share the machine with the integration tests' cloud, scripts/test.sh runs them beside it)
settings.register_profile("govcloud", deadline=None)
settings.load_profile("govcloud")

_STALE_SEEN: list[str] = []  # the stale lines, as this process (the xdist controller, or the only one) learnt them
_STALE_SENT = 0  # in a worker: how many of devcloud.testing.STALE_REPORTS already rode on a report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """The `up`s' stale lines ride on the report of the test step that brought the stack up: a report
    is what reaches the xdist controller (and the JUnit file) from the worker that ran the step."""
    global _STALE_SENT
    outcome = yield
    from devcloud.testing import STALE_REPORTS

    new = STALE_REPORTS[_STALE_SENT:]
    _STALE_SENT = len(STALE_REPORTS)
    outcome.get_result().user_properties.extend(("stale", line) for line in new)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _STALE_SEEN.extend(str(v) for k, v in report.user_properties if k == "stale")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the `up`s found stale (a stack a killed run left) and cleaned: shown even on a green run."""
    if _STALE_SEEN:
        terminalreporter.section("stale state found and cleaned by the ups")
        for line in _STALE_SEEN:
            terminalreporter.write_line(line)
