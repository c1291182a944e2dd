"""A tap-sending process for the counter tests: ``python -m tests.reactions.tap_process ...``.

Sends N taps through the service entry point and, every ``every`` taps, "delivers" its Redis
state to PostgreSQL the way a flush does, twice, then delivers a stale earlier state again: the
duplicate and out-of-order deliveries the CRDT merge must absorb.
"""

import sys

import django


def main(stream_id: int, user_id: int, taps: int, every: int) -> None:
    django.setup()
    from reactions.redis_counters import CounterState, counter_state_read
    from reactions.services.counter_flush import counter_state_merge_into_db
    from reactions.services.taps import reaction_tap

    delivered: list[CounterState] = []
    for i in range(1, taps + 1):
        reaction_tap(stream_id=stream_id, user_id=user_id, kind="heart" if i % 3 else "fire")
        if i % every == 0:
            state = counter_state_read(stream_id=stream_id)
            counter_state_merge_into_db(stream_id=stream_id, state=state)
            counter_state_merge_into_db(stream_id=stream_id, state=state)  # duplicate delivery
            if delivered:
                counter_state_merge_into_db(stream_id=stream_id, state=delivered[0])  # stale, out of order
            delivered.append(state)
    print("done", flush=True)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:5]))
