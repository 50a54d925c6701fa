"""Session fixtures for the integration tests: the real devcloud OpenStack and the site lab.

Each is brought up once per session (or a running one is reused) and only what this session started
is torn down. With CI=true a missing prerequisite fails the test instead of skipping it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcloud.testing import CloudSession, cloud_session


@pytest.fixture(scope="session")
def devcloud_cloud() -> Iterator[CloudSession]:
    """The two-region OpenStack (clouds gz, st, devcloud-admin)."""
    yield from cloud_session()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test; `cloud_last`, then `lifecycle` run last.

    Lifecycle tests crash, reset or stop the shared cloud; run last, they cannot pull it from
    under another module's tests. A `cloud_last` test runs just before them: no other test sees what
    it leaves in the cloud, so in a cloud this session started (and resets) it need not delete it.
    """
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: (item.get_closest_marker("lifecycle") is not None,
                                 item.get_closest_marker("cloud_last") is not None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed integration test's report ends with the tails of the component logs written meanwhile.

    Its setup and call are covered (a fixture that brings a stack up fails in setup); see logtails.py.
    """
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call") and item.get_closest_marker("integration"):
        from devcloud.paths import DevcloudPaths
        from tests.integration.logtails import log_tails

        started = getattr(item, "_govcloud_started", call.start)
        report.sections.append(("component logs (tails)", log_tails(DevcloudPaths.from_env().home, started - 1)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    import time

    item._govcloud_started = time.time()  # type: ignore[attr-defined]
