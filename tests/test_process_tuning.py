"""project.process_tuning.HeapFreezer: survivors are frozen out of full collections, and a full
collection it schedules itself still reclaims what died frozen."""

import asyncio
import gc
import weakref

from project.process_tuning import HeapFreezer


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_what_dies_frozen_is_reclaimed_by_the_full_collection() -> None:
    async def scenario() -> None:
        freezer = HeapFreezer(refreeze_seconds=0.01, full_seconds=3600)
        survivor = _Cycle()
        alive = weakref.ref(survivor)
        freezer.start()
        try:
            while freezer.refreezes < 2:
                await asyncio.sleep(0.01)
            assert gc.get_freeze_count() > 0
            del survivor  # cyclic garbage now, but frozen: young and automatic collections skip it
            gc.collect()
            assert alive() is not None
            freezer.refreeze(full=True)  # what the freezer does every full_seconds
            assert alive() is None and freezer.full_collections == 1
        finally:
            await freezer.stop()
            gc.unfreeze()
        assert freezer.task is None

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
