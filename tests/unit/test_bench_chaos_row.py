"""benchmarks/run.py's chaos row: re-runs per kill read from chaos.py's JSON (a list of kills)."""

from __future__ import annotations

from benchmarks.run import chaos_result


def _kill(reruns: int, per_second: float, running: float) -> dict[str, float]:
    return {"at": 10.0, "reruns": reruns, "per_second": per_second, "running": running}


def test_the_row_is_the_median_over_kills_of_working_workers_with_the_bound_counted() -> None:
    data = {"runs": [
        {"scenario": "3 workers, calm", "kills": [], "duplicates": 0, "lost": 0, "order_breaks": 0, "seconds": 50},
        {"scenario": "3 workers, one SIGKILLed every 10s", "duplicates": 1200, "lost": 0, "order_breaks": 0,
         "seconds": 180.5, "kills": [_kill(60, 400, 8), _kill(100, 400, 8), _kill(0, 0, 0), _kill(70, 400, 8),
                                     _kill(90, 100, 2)]}]}
    row = chaos_result(data, "takeover", "re-runs per SIGKILL")
    assert row.value == 80  # the median of 60, 70, 90, 100: the idle worker's kill left out
    # bound: 8 + 80 = 88 for the busy ones (60 and 70 within), 2 + 20 = 22 for the slow one (90 over)
    assert "median of 4 kills (mean 80); 2 within" in row.detail
    assert "1,200 duplicate runs, lost 0" in row.detail
