"""Settings are read once, typed, in ``project/settings/environment.py``: a bad value stops the
process at start with a message naming the variable, instead of being read as a default."""

import pytest
from django.conf import settings

from project.settings import environment
from tests.support.processes import manage


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHORUS_FAST_LANE", "ture", "CHORUS_FAST_LANE must be 1 or 0"),
        ("DJANGO_DEBUG", "yes please", "DJANGO_DEBUG must be 1 or 0"),
        ("CHORUS_HTTP_THREADS", "four", "CHORUS_HTTP_THREADS must be a whole number"),
        ("CHORUS_DRAIN_SECONDS", "10s", "CHORUS_DRAIN_SECONDS must be a number"),
        ("CHORUS_RATELIMIT_WHEN_REDIS_DOWN", "closd", "CHORUS_RATELIMIT_WHEN_REDIS_DOWN must be one of local"),
    ],
)
def test_a_bad_value_fails_manage_py_check_naming_the_variable(variable: str, value: str, message: str) -> None:
    result = manage("check", env={variable: value})
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_each_setting_has_one_name() -> None:
    """``settings.CHORUS_X`` is the value ``environment`` read, the same object: no second name."""
    assert sorted(environment.__all__) == sorted(name for name in dir(environment) if name.startswith("CHORUS_"))
    for name in environment.__all__:
        assert getattr(settings, name) is getattr(environment, name), name
    assert not hasattr(settings, "FAST_LANE")  # the old unprefixed copies are gone


def test_production_settings_have_no_channel_layer() -> None:
    """Only the benchmark's Channels-tutorial baseline uses one (``bench/naive_layer.py``)."""
    assert not hasattr(settings, "CHANNEL_LAYERS")
