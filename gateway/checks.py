"""Checks of a public deployment, run by ``manage.py check --deploy --database default``.

``scripts/serve.sh`` runs them before it binds an address other than loopback, and refuses to start
on an error: a node reachable from outside must not let anyone in with a password everybody knows.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core import checks
from django.db import DatabaseError
from django.db.models import Q

# What `make run` gave its admin user before it generated a random password; databases set up
# then may still have it.
DEFAULT_ADMIN_PASSWORD = "chorus-admin"


@checks.register(checks.Tags.security, deploy=True)
def default_admin_password_check(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """An error for every active staff user or superuser whose password is still the default."""
    if not databases or "default" not in databases:
        return []  # checks reach the database only when asked to (--database default)
    try:
        admins = list(
            get_user_model()
            .objects.using("default")
            .filter(Q(is_staff=True) | Q(is_superuser=True), is_active=True)
            .values_list("username", "password")
        )
    except DatabaseError as exc:
        return [
            checks.Error(
                f"cannot check the admin users' passwords: {exc}".strip(),
                hint="A public node starts only once the database answers.",
                id="gateway.E002",
            )
        ]
    return [
        checks.Error(
            f"the admin user {username!r} still has the default password {DEFAULT_ADMIN_PASSWORD!r}",
            hint=f"Change it first: manage.py changepassword {username}",
            id="gateway.E001",
        )
        for username, encoded in admins
        if check_password(DEFAULT_ADMIN_PASSWORD, encoded)
    ]
