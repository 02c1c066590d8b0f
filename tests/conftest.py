"""Fixtures for every test: the machine's load is scripted, never read, where a command asks for it."""

import pytest

from twolayer.measure.canary import MachineState

QUIET = MachineState(canary_s=100e-6, quiet_s=None, load_avg_1m=0.0, others_running=0)


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """`twolayer run`, `gate` and `peak` see a quiet machine: a busy moment of the machine running
    the tests (a warning line, a peak left uncached) must not change what a test sees. The tests of
    the busy machine script their own states."""
    monkeypatch.setattr("twolayer.run.driver.machine_state", lambda out: QUIET)
    monkeypatch.setattr("twolayer.measure.peak.machine_state", lambda out: QUIET)
    monkeypatch.setattr("twolayer.measure.canary.machine_state", lambda out: QUIET)
    monkeypatch.setattr("twolayer.cli.gate.machine_state", lambda out: QUIET)  # the gate command asks before it starts
    monkeypatch.setattr("twolayer.cli.fidelity.machine_state", lambda out: QUIET)  # fidelity before and after
    return QUIET
