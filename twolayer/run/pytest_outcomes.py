"""A pytest plugin `twolayer run` loads into the suite's process: it records which tests passed.

pytest-benchmark saves, at the end of a session cut short by Ctrl-C, every benchmark that had
started, the interrupted one with part of its rounds. The node ids written here tell `twolayer
run` which benchmarks finished, so an interrupted run keeps only those.
"""

from __future__ import annotations

from pathlib import Path

import pytest


class PassedTests:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodeids: list[str] = []

    @pytest.hookimpl(tryfirst=True)  # before the terminal prints the test's dot: a Ctrl-C seen after it finds it recorded
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.nodeids.append(report.nodeid)

    def pytest_sessionfinish(self) -> None:
        self.path.write_text("".join(f"{nodeid}\n" for nodeid in self.nodeids), encoding="utf-8")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tl-passed-file", default=None, help="write the node ids of the tests that passed here")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("tl_passed_file")
    if path:
        config.pluginmanager.register(PassedTests(Path(path)), "twolayer-passed-tests")
