"""The pull pauses the cyclic collector and always restores it as it was."""

from __future__ import annotations

import gc

import pytest

from outputhub.sync.client.client import collector_paused


def test_nested_pauses_resume_only_at_the_outermost_end() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_errors_restore_it() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("apply failed")
    assert gc.isenabled()
