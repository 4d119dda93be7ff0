"""Live job events: what a stream sends for a sequence of FFmpegJob states, what a resumed
stream sends, the SSE parser of the client, and the per-key bound of open streams."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ffmpeg_api.errors import ApiError
from ffmpeg_api.streams import DELETED_MARK, StreamHub
from ffmpegjob_model import events as ev
from ffmpegjob_model.model import Phase
from kubeffmpeg import sse
from kubeffmpeg.client import event_of

WORD = {p: p.rest_status for p in Phase}
START = datetime(2026, 1, 1, tzinfo=UTC)


def job(phase: str | None = None, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = dict(status)
    if phase:
        st["phase"] = phase
    return {"metadata": {"name": "job-1", "uid": "u"}, "spec": {"tenant": "default"}, "status": st}


def running(step: int, percent: float, **extra: Any) -> dict[str, Any]:
    return job("Running", startTime="2026-01-01T00:00:00Z",
               progress={"step": step, "steps": 2, "percent": percent, "speed": "2x"}, **extra)


HISTORY = [
    job(),
    job("Pending", queuePosition=3),
    job("Pending", queuePosition=1),
    running(1, 0),
    running(1, 40),
    running(2, 80),
    job("Succeeded", startTime="2026-01-01T00:00:00Z", progress={"step": 2, "steps": 2, "percent": 100}),
]


def play(states: list[dict[str, Any]], cursor: ev.Cursor | None = None) -> tuple[list[ev.Event], ev.Cursor]:
    cursor = cursor or ev.Cursor()
    out: list[ev.Event] = []
    for s in states:
        out += ev.advance(cursor, "job-1", s, WORD, now=START + timedelta(seconds=10))
    return out, cursor


def test_a_whole_job_sends_every_phase_in_order_then_the_result() -> None:
    out, cursor = play(HISTORY)
    names = [(e.name, getattr(e.data, "phase", None) or getattr(e.data, "position", None)) for e in out]
    assert names == [("phase", "Pending"), ("queue", 3), ("queue", 1), ("phase", "Running"), ("progress", None),
                     ("progress", None), ("progress", None), ("phase", "Succeeded"), ("result", None)]
    assert cursor.done
    ids = [e.id for e in out]
    assert ids == sorted(ids)
    prog = [e.data for e in out if isinstance(e.data, ev.ProgressEvent)]
    assert [(p.step, p.percent) for p in prog] == [(1, 0), (1, 40), (2, 80)]
    assert prog[1].eta_seconds == 15.0  # 10 s for 40 %: 15 s for the other 60 %
    assert play([HISTORY[-1]], cursor)[0] == []  # nothing after the end


def test_unchanged_status_sends_nothing() -> None:
    out, _ = play([running(1, 40), running(1, 40), running(1, 40)])
    assert [e.name for e in out] == ["phase", "phase", "progress"]


@pytest.mark.parametrize("cut", range(1, 9))
def test_a_resumed_stream_misses_nothing_and_repeats_nothing(cut: int) -> None:
    """Cut the stream after `cut` events; a new stream from the last id, shown only the states
    after the cut (or just the final one), completes the history exactly."""
    full, _ = play(HISTORY)
    first = full[:cut]
    for later in (HISTORY, HISTORY[-1:]):
        resumed, _ = play(later, ev.Cursor(last=ev.EventId.parse(str(first[-1].id))))
        got = [(e.name, e.id) for e in first + resumed if e.name != "queue" and e.name != "progress"]
        want = [(e.name, e.id) for e in full if e.name != "queue" and e.name != "progress"]
        assert got == want


def test_a_job_cancelled_while_pending_never_ran_and_a_failure_names_its_step() -> None:
    out, _ = play([job(), job("Cancelled", error="Job was cancelled")])
    assert [getattr(e.data, "phase", e.name) for e in out] == ["Pending", "Cancelled", "error"]
    failed = job("Failed", startTime="2026-01-01T00:00:00Z", error="step 2 of 2 failed: ... stderr tail",
                 progress={"step": 2, "steps": 2, "percent": 60})
    out, _ = play([failed])
    final = out[-1].data
    assert isinstance(final, ev.FinalEvent) and (final.step, final.steps, final.status) == (2, 2, "failed")
    assert "stderr tail" in (final.error or "")
    assert [getattr(e.data, "phase", e.name) for e in out] == ["Pending", "Running", "Failed", "error"]


def test_a_deleted_job_ends_the_stream_with_an_error() -> None:
    out, cursor = play([job(), None])  # type: ignore[list-item]
    assert out[-1].name == "error" and cursor.done


def test_split_jobs_report_each_chunk() -> None:
    st = running(1, 30, split={"stage": "Chunks"}, chunks=[{"index": 0, "phase": "Running", "percent": 50},
                                                           {"index": 1, "phase": "Pending", "percent": 10}],
                 chunkReports={"0": {"percent": 50, "speed": "1.1x"}})
    out, _ = play([st])
    p = out[-1].data
    assert isinstance(p, ev.ProgressEvent) and p.stage == "Chunks"
    assert [(c.index, c.percent, c.speed) for c in p.chunks or []] == [(0, 50, "1.1x"), (1, 10, None)]


def test_event_ids_parse_and_bad_ones_start_over() -> None:
    assert ev.EventId.parse("1.2.455") == ev.EventId(1, 2, 455)
    assert ev.EventId.parse("1.2.455") < ev.EventId(2)
    for bad in (None, "", "x", "1.2", "9.0.0", "-1.0.0"):
        assert ev.EventId.parse(bad) is None


def test_the_client_parses_what_the_stream_sends() -> None:
    lines = [": ping", "id: 1.1.400", "event: progress", 'data: {"job_id":"j","step":1,"steps":2,"percent":40}',
             "retry: 2000", "", ": ping - heartbeat", "event: unknown", "data: {}", ""]
    parser = sse.Parser()
    raws = list(sse.parse(iter(lines), parser))
    assert [r.event for r in raws] == ["progress", "unknown"]
    assert parser.last_id == "1.1.400"
    got = event_of(raws[0])
    assert got is not None and isinstance(got.data, ev.ProgressEvent) and got.data.percent == 40
    assert event_of(raws[1]) is None


class FakeKube:
    def __init__(self) -> None:
        self.reads: list[str] = []

    def get_ffmpegjob(self, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return job("Succeeded") if name == "job-1" else None


class FakeWatcher:
    def __init__(self) -> None:
        self.observers: list[Any] = []
        self.kube = FakeKube()

    def observe(self, fn: Any) -> None:
        self.observers.append(fn)


async def test_one_observer_for_all_streams_and_a_bound_per_key() -> None:
    w = FakeWatcher()
    hub = StreamHub(w, max_per_key=2)  # type: ignore[arg-type]
    slots = [hub.acquire("k1"), hub.acquire("k1"), hub.acquire("k2")]
    with pytest.raises(ApiError) as e:
        hub.acquire("k1")
    assert e.value.status == 429
    slots[0].release()
    slots[0].release()  # twice is once
    slots.append(hub.acquire("k1"))
    assert hub.open_streams() == 3
    subs = [hub.subscribe("job-1") for _ in range(50)] + [hub.subscribe("job-2")]
    assert len(w.observers) == 1
    hub.dispatch("MODIFIED", job("Running"))
    hub.dispatch("RESYNC", {})  # after a re-list: one read per job, whatever its streams
    await asyncio.sleep(0)
    assert sorted(w.kube.reads) == ["job-1", "job-2"]
    assert all(s.queue.qsize() == 2 for s in subs[:50]) and subs[-1].queue.qsize() == 1
    assert subs[0].queue.get_nowait()["status"]["phase"] == "Running"
    assert subs[0].queue.get_nowait()["status"]["phase"] == "Succeeded"
    assert subs[-1].queue.get_nowait()[DELETED_MARK]  # job-2 is gone
    for s in subs:
        hub.unsubscribe(s)
    hub.dispatch("MODIFIED", job("Running"))
    assert not hub._subs
