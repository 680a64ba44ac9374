"""The benchmark harness's pure parts: tables, number formats, CPU-share arithmetic, waiting
for a quiet machine and re-running noisy runs (with a fake clock: nothing sleeps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.data import count_lines
from benchmarks.harness import Col, Row, Table


def test_table_pads_each_column_and_keeps_the_gaps() -> None:
    table = Table(Col("name", "<6"), Col("ms", ">5"), Col("met", "<4", gap=2), Col("note"))
    assert table.header() == "name      ms  met  note"
    assert table.row("a", "1.5", "ok", "x") == "a        1.5  ok   x"


def test_table_row_with_fewer_cells_stops_early_and_a_long_cell_pushes_right() -> None:
    table = Table(Col("name", "<4"), Col("ms", ">5"), Col("x", ">3"))
    assert table.row("a") == "a   "
    assert table.row("a", "1") + " skipped" == "a        1 skipped"
    assert table.row("longer", "123456", "7") == "longer 123456   7"
    with pytest.raises(ValueError):
        table.row("a", "b", "c", "d")


def test_print_header_underlines_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    Table(Col("a", "<3"), Col("b", ">4")).print_header()
    assert capsys.readouterr().out == "a      b\n--------\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (4.44, "4.4"), (99.94, "99.9"), (104.4, "104"), (1133, "1,133")],
)
def test_ms(value: float | None, text: str) -> None:
    assert harness.ms(value) == text


def test_ratio_and_percent() -> None:
    assert harness.ratio(3.0, 2.0) == "1.50x"
    assert harness.ratio(3.0, 2.0, digits=1) == "1.5x"
    assert harness.ratio(None, 2.0) == "-"
    assert harness.ratio(1.0, 0.0) == "-"
    assert harness.ratio(1.0, None) == "-"
    assert harness.percent(0.354) == "35%"
    assert harness.percent(None) == "?"


def test_busy_ticks_leave_out_idle_and_iowait() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    assert harness.busy_ticks([100, 5, 40, 1000, 7, 3, 2, 1, 9, 0]) == 151
    assert harness.busy_ticks([1, 2, 3, 4]) == 6  # short lines count what they have


def test_others_share_takes_our_cpu_out_of_the_machine_s() -> None:
    # 2 cores for 4 s = 8 CPU seconds; the machine was busy 5 s, 3 of them ours: others 2 / 8
    assert harness.others_share(10.0, 15.0, own=3.0, wall=4.0, cores=2) == pytest.approx(0.25)
    # more of our own CPU than the machine counted (tick rounding): never below 0
    assert harness.others_share(10.0, 11.0, own=1.5, wall=1.0, cores=2) == 0.0
    assert harness.others_share(None, 11.0, own=1.0, wall=1.0) is None
    assert harness.others_share(10.0, 11.0, own=1.0, wall=0.0) is None
    assert harness.others_busy(1.0, 4.0, 1.0) == 2.0
    assert harness.cpu_share(3.0, 1.5, cores=4) == 0.5


def test_noisy_means_over_ten_percent() -> None:
    assert not harness.is_noisy(None)
    assert not harness.is_noisy(0.10)
    assert harness.is_noisy(0.11)
    assert harness.noise_warning("while 2 row(s) ran") == (
        "warning: other processes used more than 10% of the CPU while 2 row(s) ran; those "
        "times are inflated, rerun on a quiet machine"
    )


def test_row_median_best_and_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness.os, "cpu_count", lambda: 2)
    row = Row("a", times=[0.3, 0.1, 0.2], busy_others=0.3, wall=0.6)
    assert row.median_ms() == pytest.approx(200)
    assert row.best_ms() == pytest.approx(100)
    assert row.others() == pytest.approx(0.25)
    assert Row("empty").median_ms() is None
    assert Row("empty").others() is None
    assert harness.noisy_rows([row, None, Row("quiet", wall=1.0)]) == 1


class FakeMachine:
    """A clock that advances only when slept, and a busy counter running at `load` cores."""

    def __init__(self, loads: list[float], cores: int = 2) -> None:
        self.now, self.busy_s, self.loads, self.cores = 0.0, 0.0, loads, cores
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def busy(self) -> float:
        return self.busy_s

    def sleep(self, seconds: float) -> None:
        load = self.loads.pop(0) if self.loads else 0.0
        self.slept.append(seconds)
        self.now += seconds
        self.busy_s += load * self.cores * seconds


def wait(machine: FakeMachine, limit: float) -> bool:
    return harness.wait_quiet(limit, busy=machine.busy, clock=machine.clock, sleep=machine.sleep)


def test_wait_quiet_returns_once_a_window_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness.os, "cpu_count", lambda: 2)
    machine = FakeMachine([0.5, 0.3, 0.05])
    assert wait(machine, 60)
    assert machine.slept == [3.0, 3.0, 3.0]


def test_wait_quiet_gives_up_at_the_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(harness.os, "cpu_count", lambda: 2)
    machine = FakeMachine([0.9] * 10)
    assert not wait(machine, 7)
    assert machine.slept == [3.0, 3.0, 3.0]
    assert "did not go quiet within 7 s" in capsys.readouterr().out


def test_wait_quiet_does_nothing_without_a_limit() -> None:
    machine = FakeMachine([0.9])
    assert not wait(machine, 0)
    assert machine.slept == []


def test_run_with_retry_reruns_noisy_runs_up_to_k_times() -> None:
    shares = iter([0.5, 0.4, 0.05, 0.9])
    reports: list[tuple[float, bool]] = []

    def report(share: float, again: bool) -> None:
        reports.append((share, again))

    kept, discarded = harness.run_with_retry(
        lambda: next(shares), lambda s: s, report, retry_noisy=3
    )
    assert (kept, discarded) == (0.05, 2)
    assert reports == [(0.5, True), (0.4, True), (0.05, False)]
    # without retries, a noisy run is kept; a run with no share (failed) is never retried
    assert harness.run_with_retry(lambda: 0.9, lambda s: s, report) == (0.9, 0)
    assert harness.run_with_retry(lambda: 0.9, lambda s: None, report, retry_noisy=2) == (0.9, 0)


def test_child_output_reads_the_last_line_or_says_why_not() -> None:
    assert harness.child_output(0, 'noise\n{"rows": 3}\n', "") == {"rows": 3}
    assert harness.child_output(2, "", "a\nb\nc\nd\n") == "exit 2: b | c | d"
    assert harness.child_output(1, "", "") == "exit 1: (no stderr)"
    assert harness.child_output(0, "not json", "").startswith("unreadable output: ")
    assert harness.child_output(0, "", "").startswith("unreadable output: ")


def test_command_line_names_the_module() -> None:
    line = harness.command_line("benchmarks.bench_x", ["--events", "10", "--only", "a b"])
    assert line == "command: python -m benchmarks.bench_x --events 10 --only 'a b'"


def test_print_ratio_table(capsys: pytest.CaptureFixture[str]) -> None:
    ours = Row("a. series", times=[0.104, 0.079], wall=0.2)
    base = Row("a'. bare DuckDB", times=[0.0637, 0.0441], wall=0.1)
    page = Row("page rerun", times=[0.348])
    harness.print_ratio_table([(ours, base, 150.0, ""), (page, None, None, "1M only")])
    lines = capsys.readouterr().out.splitlines()
    header = "name median ms best ms baseline ms ratio target ms met others CPU"
    assert lines[0].split() == header.split()
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["a.", "series", "91.5", "79.0", "53.9", "1.7x", "150", "met", "0%"]
    assert lines[3].split() == ["a'.", "bare", "DuckDB", "53.9", "44.1"]
    assert lines[4].split() == ["page", "rerun", "348", "348", "-", "-", "1M", "only", "-", "?"]


def test_count_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    assert count_lines(path) == 2
