"""``stats``/``pod stats``: one report, or one every interval until ctrl-c."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from skiff.cli.live import CLEAR_SCREEN, check_interval, print_reports
from skiff.errors import UsageError


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"no_stream": False, "no_reset": False, "interval": 0, **kw})


def _reports(stop_after: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def report() -> str:
        calls.append(len(calls))
        if len(calls) > stop_after:
            raise KeyboardInterrupt
        return f"report {len(calls)}\n"

    return calls, report


def test_streaming_clears_the_screen_before_each_report_until_ctrl_c(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls, report = _reports(stop_after=3)
    assert print_reports(_args(), report) == 0
    assert len(calls) == 4
    out = capsys.readouterr().out
    assert out == "".join(f"{CLEAR_SCREEN}report {n}\n" for n in (1, 2, 3))


def test_no_reset_keeps_the_screen_and_no_stream_prints_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, report = _reports(stop_after=2)
    print_reports(_args(no_reset=True), report)
    assert capsys.readouterr().out == "report 1\nreport 2\n"
    calls, report = _reports(stop_after=5)
    assert print_reports(_args(no_stream=True), report) == 0
    assert len(calls) == 1
    assert capsys.readouterr().out == "report 1\n"


def test_an_interval_below_one_second_is_refused() -> None:
    check_interval(_args(interval=1))
    with pytest.raises(UsageError, match="invalid --interval 0"):
        check_interval(_args(interval=0))
