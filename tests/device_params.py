import pytest

from twolayer.devices import device_absent_reason

TORCH_TEST_DEVICES = ("cpu", "cuda")


def device_param(device: str):
    """A test parameter for `device`, skipped with the reason when the device is absent here."""
    reason = device_absent_reason(device)
    return pytest.param(device, id=device, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


DEVICES = [device_param(d) for d in TORCH_TEST_DEVICES]
