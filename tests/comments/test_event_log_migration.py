"""Migration ``comments.0004`` redacts the comment events written before edits and deletes did."""

from pathlib import Path

import pytest

from tests.support.databases import run_module, scratch_database_url


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_old_events_get_their_comment_and_lose_replaced_and_deleted_bodies(backend, tmp_path: Path) -> None:
    """Every comment event gets its subject; its body becomes the comment's current one ("" if deleted)."""
    url = scratch_database_url(backend, suffix="event_log_migration", directory=tmp_path)

    events = run_module("tests.comments.migration_process", database_url=url)

    assert events == {
        "untouched": [["untouched", "same"]],
        "edited": [["edited", "third"]] * 3,
        "deleted": [["deleted", ""]] * 2,
        "other": [[None, None]],
    }
