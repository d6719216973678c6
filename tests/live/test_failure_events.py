"""The live ``failure`` events (live/events.py): the update rule against a plain
reading-by-reading statement of it, for any cut of a stream and checkpoint restarts.

The rule: an ``updated`` transition when the top sensors (largest mean contribution
over the event so far; ties in sensor order) differ from the last reported set, looked
at no sooner than ``update_every`` readings after the last report."""

from __future__ import annotations

import numpy as np
import pytest

from sensorguard.live.events import FailureEvents

SENSORS = [f"s{i}" for i in range(9)]


def _expected_updates(flags: np.ndarray, contrib: np.ndarray, k: int, every: int) -> list[int]:
    """Rows of the ``updated`` transitions, the rule written out one reading at a time."""
    out: list[int] = []
    reported: set[int] | None = None
    total = np.zeros(contrib.shape[1])
    n = since = 0
    for i, f in enumerate(flags.tolist()):
        if not f:
            reported = None
            continue
        if reported is None:  # opened: the first reading's own top
            total, n, since = np.zeros(contrib.shape[1]), 0, 0
            reported = set(np.argsort(-contrib[i], kind="stable")[:k].tolist())
        total = total + contrib[i]
        n += 1
        since += 1
        if since < every:
            continue
        top = set(np.argsort(-(total / n), kind="stable")[:k].tolist())
        if top != reported:
            out.append(i)
            reported, since = top, 0
    return out


@pytest.mark.parametrize("every", [1, 3, 10])
def test_updates_follow_the_rule_for_any_cut_and_restart(every: int) -> None:
    rng = np.random.default_rng(every)
    times0 = np.datetime64("2026-01-01T00:00:00")
    seen = 0
    for trial in range(40):
        n = int(rng.integers(50, 600))
        flags = np.zeros(n, dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(0, n))
            flags[a : a + int(rng.integers(5, 300))] = True
        contrib = rng.exponential(size=(n, 9)) * (1 + 5 * rng.random(9))
        if trial % 3 == 0:
            contrib = np.round(contrib)  # ties, also at the k-th place
        score = rng.random(n) * 3
        times = times0 + np.arange(n).astype("timedelta64[s]")
        ev = FailureEvents("a", "m", "1", SENSORS, top_k=3, update_every=every)
        got, i = [], 0
        while i < n:
            step = int(rng.integers(1, 60))
            for t in ev.feed(
                times[i : i + step], flags[i : i + step], score[i : i + step], contrib[i : i + step]
            ):
                if t.action == "updated":
                    got.append(int((np.datetime64(t.at) - times0) / np.timedelta64(1, "s")))
            restored = FailureEvents("a", "m", "1", SENSORS, top_k=3, update_every=every)
            restored.restore(ev.state())  # a checkpoint at every cut
            ev = restored
            i += step
        assert got == _expected_updates(flags, contrib, 3, every), trial
        seen += len(got)
    assert seen > 20  # the rule fired
