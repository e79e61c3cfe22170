"""skiff.runtime.stats without a kernel: the report's arithmetic and podman's output.

Expected text is what podman 4.3.1 printed on this host for a busybox
container with ``-m 64m`` (``podman stats --no-stream`` and ``--format
json``): ``340kB / 67.11MB``, ``332KiB / 64MiB``, ``0B / 0B``, the table
layout and JSON indented by one space.
"""

from __future__ import annotations

import json

import pytest

from skiff.cli.statsview import format_stats
from skiff.errors import UsageError
from skiff.runtime import stats
from skiff.runtime.stats import StatsSample, stats_report

SEC = 1_000_000_000
CID = "768804bc354ba8b29ffa256992f80118aca4775c9673435f45816c59dcdc25b6"


def sample(**kw: object) -> StatsSample:
    base: dict[str, object] = {
        "id": CID,
        "name": "st1",
        "running": True,
        "wall_ns": 1000 * SEC,
        "mono_ns": 50 * SEC,
        "started_ns": 900 * SEC,
        "cpu_ns": 0,
    }
    base.update(kw)
    return StatsSample(**base)  # type: ignore[arg-type]


def test_first_report_measures_since_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "physical_memory", lambda: 25_276_514_304)
    after = sample(cpu_ns=50 * SEC, mem_usage=339968, mem_limit=64 << 20, pids=1)
    (record,) = stats_report(None, [after])
    assert list(record) == list(stats.REPORT_FIELDS)
    assert record["CPU"] == pytest.approx(50.0)  # 50 s of CPU in 100 s since start
    assert record["AvgCPU"] == record["CPU"]
    assert record["MemLimit"] == 64 << 20
    assert record["MemPerc"] == pytest.approx(339968 / (64 << 20) * 100)
    assert record["UpTime"] == record["Duration"] == record["CPUNano"] == 50 * SEC
    assert record["SystemNano"] == 1000 * SEC
    assert record["PIDs"] == 1


def test_second_report_measures_the_interval_on_the_monotonic_clock() -> None:
    before = sample(cpu_ns=10 * SEC, mono_ns=50 * SEC, wall_ns=1000 * SEC)
    # the wall clock stepped back; the monotonic clock says 0.5 s passed
    after = sample(cpu_ns=10 * SEC + SEC // 4, mono_ns=50 * SEC + SEC // 2, wall_ns=990 * SEC)
    (record,) = stats_report([before], [after])
    assert record["CPU"] == pytest.approx(50.0)
    assert record["AvgCPU"] == pytest.approx((10.25 * SEC) / (90 * SEC) * 100)


def test_restarted_container_is_measured_since_its_new_start() -> None:
    before = sample(cpu_ns=80 * SEC)
    after = sample(cpu_ns=5 * SEC, mono_ns=51 * SEC, wall_ns=1001 * SEC, started_ns=991 * SEC)
    (record,) = stats_report([before], [after])
    assert record["CPU"] == pytest.approx(50.0)


def test_a_new_start_time_also_means_a_restart() -> None:
    before = sample(cpu_ns=1 * SEC, started_ns=900 * SEC)
    after = sample(cpu_ns=5 * SEC, mono_ns=51 * SEC, wall_ns=1001 * SEC, started_ns=991 * SEC)
    (record,) = stats_report([before], [after])
    assert record["CPU"] == pytest.approx(50.0)  # 5 s in the 10 s since the new start


def test_samples_are_matched_by_id_and_unknown_start_gives_zero() -> None:
    other = sample(id="b" * 64, name="other", cpu_ns=SEC, started_ns=None)
    before = sample(cpu_ns=SEC)
    after = sample(cpu_ns=2 * SEC, mono_ns=52 * SEC)
    first, second = stats_report([before], [other, after])
    assert first["Name"] == "other"
    assert first["CPU"] == 0.0 and first["AvgCPU"] == 0.0
    assert second["CPU"] == pytest.approx(50.0)


def test_memory_limit_is_capped_at_physical_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "physical_memory", lambda: 1 << 30)
    unlimited, too_big = stats_report(
        None,
        [
            sample(mem_usage=1 << 20, mem_limit=None),
            sample(id="c" * 64, mem_usage=1 << 20, mem_limit=1 << 40),
        ],
    )
    assert unlimited["MemLimit"] == too_big["MemLimit"] == 1 << 30
    assert unlimited["MemPerc"] == pytest.approx(100 / 1024)


def test_stopped_container_is_all_zeros() -> None:
    (record,) = stats_report(None, [sample(running=False, cpu_ns=0)])
    assert record["ContainerID"] == CID and record["Name"] == "st1"
    assert record["PerCPU"] == []
    assert all(
        record[k] == 0 for k in stats.REPORT_FIELDS if k not in ("ContainerID", "Name", "PerCPU")
    )


def podman_like_record() -> dict[str, object]:
    return {
        "AvgCPU": 86.73,
        "ContainerID": CID,
        "Name": "st1",
        "PerCPU": [1, 2],
        "CPU": 86.7299,
        "CPUNano": 177_986_355,
        "CPUSystemNano": 10_000_000,
        "SystemNano": 1000 * SEC,
        "MemUsage": 339968,
        "MemLimit": 67108864,
        "MemPerc": 339968 / 67108864 * 100,
        "NetInput": 0,
        "NetOutput": 0,
        "BlockInput": 0,
        "BlockOutput": 0,
        "PIDs": 1,
        "UpTime": 177_986_355,
        "Duration": 177_986_355,
    }


def test_default_table_is_podmans() -> None:
    text = format_stats([podman_like_record()], None)
    assert text == (
        "ID            NAME        CPU %       MEM USAGE / LIMIT  MEM %       NET IO      "
        "BLOCK IO    PIDS        CPU TIME      AVG CPU %\n"
        "768804bc354b  st1         86.73%      340kB / 67.11MB    0.51%       0B / 0B     "
        "0B / 0B     1           177.986355ms  86.73%\n"
    )
    assert format_stats([podman_like_record()], None, noheading=True).startswith("768804bc354b")


def test_json_is_podmans_summary_indented_by_one_space() -> None:
    text = format_stats([podman_like_record()], "json")
    assert text.startswith('[\n {\n  "id": "768804bc354b",\n')
    assert json.loads(text) == [
        {
            "id": "768804bc354b",
            "name": "st1",
            "cpu_time": "177.986355ms",
            "cpu_percent": "86.73%",
            "avg_cpu": "86.73%",
            "mem_usage": "340kB / 67.11MB",
            "mem_percent": "0.51%",
            "net_io": "0B / 0B",
            "block_io": "0B / 0B",
            "pids": "1",
        }
    ]
    assert format_stats([], "{{ json . }}") == "[]\n"


def test_templates_see_podmans_fields_and_methods() -> None:
    row = [podman_like_record()]
    out = format_stats(
        row,
        "{{.ID}} {{.Name}} {{.CPU}} {{.MemUsageBytes}} {{.PIDs}} {{.PIDS}} {{.UpTime}} "
        "{{.Up}} {{.ContainerStats.MemUsage}} {{.NetIO}} {{.BlockIO}} {{.AVGCPU}} {{.MemPerc}}",
    )
    assert out == (
        "768804bc354b st1 86.7299 332KiB / 64MiB 1 1 177.986355ms 177.986355ms 339968 "
        "0B / 0B 0B / 0B 86.73% 0.51%\n"
    )
    assert format_stats(row, "{{.ID}}", no_trunc=True) == CID + "\n"
    table = format_stats(row, "table {{.ID}} {{.CPUNano}} {{.MemUsage}} {{.AVGCPU}}")
    assert table.splitlines()[0].split("  ")[0] == "ID"
    assert "CPU NANO" in table and "MEM USAGE / LIMIT" in table and "AVG CPU %" in table
    # {{json .}} in a larger template: the record, UpTime as nanoseconds
    inner = json.loads(format_stats(row, "<{{json .}}>").strip()[1:-1])
    assert inner["UpTime"] == 177_986_355 and inner["MemUsage"] == 339968


def test_unknown_template_field_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        format_stats([podman_like_record()], "{{.Nope}}")
