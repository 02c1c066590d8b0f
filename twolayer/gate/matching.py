"""Which benchmarks of the base and the head are the same benchmark, and those only one side has."""

from __future__ import annotations

from twolayer.gate.workers import Side
from twolayer.schema import MATCH, MATCH_DEFAULTS
from twolayer.variants import VARIANTS


def match_of(case: dict) -> dict:
    return {k: case.get(k, MATCH_DEFAULTS.get(k)) for k in MATCH}


def undistributed(cases: list[dict]) -> list[dict]:
    """The cases of a default selection less the distributed variants' (ddp). Their backward hands
    the all-reduce to the backend's thread and waits for it; under a co-tenant that handoff waits
    on the scheduler, per process, by milliseconds: a trial on identical code (2026-11-29) had
    ddp backward at 3.7 ms in the base's processes and 0.53 ms in the head's, a false `faster`
    (0.20) that pairing cannot cancel. They are gated only when named (--variants)."""
    return [case for case in cases if not (case["variant"] in VARIANTS and VARIANTS[case["variant"]].distributed)]


def matched_cases(base_cases: list[dict], new_cases: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """The runnable cases both sides have (by what they time, not by test id), and those in one only."""
    key = lambda case: tuple(match_of(case).values())  # noqa: E731
    base_keys = {key(c): c for c in base_cases if not c["skip"]}
    new_keys = {key(c): c for c in new_cases if not c["skip"]}
    both = [{**new_keys[k], "base_id": base_keys[k]["id"]} for k in new_keys if k in base_keys]
    return (both, [c for k, c in base_keys.items() if k not in new_keys],
            [c for k, c in new_keys.items() if k not in base_keys])


class Remapped:
    """A side whose case ids differ from the driver's (a test id renamed between commits)."""

    def __init__(self, side: Side, ids: dict[str, str]) -> None:
        self.side, self.ids = side, ids

    def request(self, op: str, **fields) -> dict:
        if "case" in fields:
            fields["case"] = self.ids.get(fields["case"], fields["case"])
        return self.side.request(op, **fields)

    def close(self) -> None:
        self.side.close()
