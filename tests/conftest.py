"""Shared by both suites: the host facts the host-dependent tests are gated on
(tests/hostinfo.py), in the header of every run."""

from __future__ import annotations

import hostinfo


def pytest_report_header() -> str:
    return hostinfo.summary()
