"""The model pool's housekeeping (serving/fleet.py), without a registry."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

from sensorguard.serving.fleet import ModelPool
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.settings import ServingSettings


def test_objects_of_the_pools_first_round_are_frozen_out_of_the_collected_heap() -> None:
    # the first round builds long-lived caches after the default holder froze the heap;
    # left there, every full collection of the predictor walked them
    made: list[Any] = []

    async def run() -> tuple[int, int, int]:
        default = SimpleNamespace(last_check=1.0, _lock=asyncio.Lock(), source=None)
        pool = ModelPool(default, ServingSettings(poll_interval=3600), ServingMetrics())  # type: ignore[arg-type]
        rounds = asyncio.Event()

        async def discover() -> None:
            made.extend([{"cache": i}] for i in range(500))  # long-lived, GC-tracked
            rounds.set()

        pool._discover = discover  # type: ignore[method-assign]
        gc.unfreeze()
        before = gc.get_freeze_count()
        pool.start()
        await asyncio.wait_for(rounds.wait(), 10)
        await asyncio.sleep(0.05)
        after = gc.get_freeze_count()
        tracked = sum(1 for o in gc.get_objects() if o is made[0])
        await pool.stop()
        return before, after, tracked

    before, after, tracked = asyncio.run(run())
    gc.unfreeze()
    assert before == 0
    assert after >= 1000  # the 500 lists and their dicts, at least
    assert tracked == 0  # no longer in the generations a collection walks
