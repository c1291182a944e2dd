"""Safe defaults before a public bind: the admin login's limit, the admin password, the bind check,
the secret key, and the CHORUS_HTTPS switch.

The scripts run as subprocesses, as ``make run`` runs them, against a private PostgreSQL.
"""

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django_ratelimit.core import _get_window, _split_rate

from tests.conftest import ApiUser
from tests.support.processes import BIN, ROOT, AsgiNode, ServedNode, wait_until
from tests.support.stores import PostgresServer

DEFAULT_PASSWORD = "chorus-admin"


def _script_env(**overrides: str | None) -> dict[str, str]:
    """The test run's environment for a script, minus the variables a fresh shell would not have."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PATH": f"{BIN}:{os.environ['PATH']}"}
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SECRET_KEY"):
        env.pop(name, None)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


@dataclass
class Setup:
    database_url: str
    secret_file: Path
    first: subprocess.CompletedProcess[str]

    def env(self, **overrides: str | None) -> dict[str, str]:
        return _script_env(DATABASE_URL=self.database_url, CHORUS_SECRET_KEY_FILE=str(self.secret_file), **overrides)

    def setup(self, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        done = _run(["scripts/setup.sh"], self.env(**overrides))
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def password_hash(self, username: str) -> str:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT password FROM auth_user WHERE username = %s", [username]).fetchone()
        assert row is not None, f"no user {username}"
        return row[0]

    def set_password(self, username: str, password: str) -> None:
        code = (
            "from django.contrib.auth import get_user_model; "
            f"u = get_user_model().objects.get(username={username!r}); u.set_password({password!r}); u.save()"
        )
        done = _run([sys.executable, "manage.py", "shell", "-c", code], self.env())
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def first_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """``scripts/setup.sh`` run once, as on a fresh clone, against a private PostgreSQL."""
    server = PostgresServer.primary("setup-pg").start().wait_ready()
    try:
        setup = Setup(
            database_url=server.url("chorus"),
            secret_file=tmp_path_factory.mktemp("secret") / "secret-key",
            first=subprocess.CompletedProcess([], 0),
        )
        setup.first = setup.setup()
        yield setup
    finally:
        server.remove()


def _printed_password(output: str) -> str | None:
    match = re.search(r"admin user: admin / (\S+)", output)
    return match[1] if match else None


def test_setup_gives_the_admin_a_random_password_printed_once_and_kept(first_setup: Setup) -> None:
    """No default password: a random one, printed once; a later run neither prints nor resets it."""
    # then: the first run printed a random password, which is the admin's
    password = _printed_password(first_setup.first.stdout)
    assert password is not None, first_setup.first.stdout
    assert password != DEFAULT_PASSWORD and len(password) >= 16
    stored = first_setup.password_hash("admin")
    assert check_password(password, stored)
    assert not check_password(DEFAULT_PASSWORD, stored)

    # when: make run starts again
    again = first_setup.setup()

    # then: the password is neither printed nor changed
    assert password not in again.stdout + again.stderr
    assert "admin user admin already exists" in again.stdout
    assert first_setup.password_hash("admin") == stored


def test_an_explicit_superuser_password_wins_and_is_not_printed(first_setup: Setup) -> None:
    """DJANGO_SUPERUSER_USERNAME / _PASSWORD create that user with that password, never echoed."""
    done = first_setup.setup(DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="an-explicit-pass-phrase")
    assert "an-explicit-pass-phrase" not in done.stdout + done.stderr
    assert check_password("an-explicit-pass-phrase", first_setup.password_hash("ops"))
    # and a later run with another password does not reset it
    first_setup.setup(DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="something-else-entirely")
    assert check_password("an-explicit-pass-phrase", first_setup.password_hash("ops"))


def test_setup_keeps_a_random_secret_key_in_a_private_file(first_setup: Setup) -> None:
    """make run on a fresh clone: DEBUG off, so the secret key is generated once, kept, owner-only."""
    key = first_setup.secret_file.read_text().strip()
    assert len(key) >= 50
    assert stat.S_IMODE(first_setup.secret_file.stat().st_mode) == 0o600
    first_setup.setup()
    assert first_setup.secret_file.read_text().strip() == key
    printed = _run(
        [sys.executable, "manage.py", "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        first_setup.env(),
    )
    assert printed.stdout.strip().splitlines()[-1] == key


def test_without_a_secret_key_and_with_debug_off_nothing_starts(tmp_path: Path) -> None:
    """No DJANGO_SECRET_KEY and no key file: settings refuse to load (a fixed fallback is forgeable)."""
    missing = str(tmp_path / "no-such-key")
    refused = _run([sys.executable, "manage.py", "check"], _script_env(CHORUS_SECRET_KEY_FILE=missing))
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY" in refused.stderr
    # DEBUG on (a developer's own machine) or a key set: it starts
    debug = _run([sys.executable, "manage.py", "check"], _script_env(CHORUS_SECRET_KEY_FILE=missing, DJANGO_DEBUG="1"))
    assert debug.returncode == 0, debug.stderr
    keyed = _run([sys.executable, "manage.py", "check"], _script_env(DJANGO_SECRET_KEY="k" * 50))
    assert keyed.returncode == 0, keyed.stderr


def test_a_public_bind_is_refused_while_an_admin_has_the_default_password(first_setup: Setup) -> None:
    """serve.sh on a non-loopback address refuses to start until the default password is changed."""
    # given: an admin with the old default password (a database set up by an earlier make run)
    first_setup.set_password("admin", DEFAULT_PASSWORD)
    env = {"DATABASE_URL": first_setup.database_url, "CHORUS_SECRET_KEY_FILE": str(first_setup.secret_file)}

    # when: a node is started on every address
    public = ServedNode("bind-public", env={**env, "CHORUS_BIND": "0.0.0.0"}).start()
    try:
        # then: it exits, saying why
        wait_until(lambda: not public.alive(), timeout=30, what="the public node to refuse to start")
        assert public.proc is not None and public.proc.returncode != 0
        assert "default password" in public.run_log()
    finally:
        public.stop()

    # and on loopback (a developer's machine) it starts
    local = ServedNode("bind-local", env=env).start()
    try:
        local.wait_ready()
    finally:
        local.stop()

    # when: the password is changed, the public bind starts
    first_setup.set_password("admin", "a-much-better-password")
    public = ServedNode("bind-public", env={**env, "CHORUS_BIND": "0.0.0.0"}).start()
    try:
        public.wait_ready(timeout=60)
    finally:
        public.stop()


def test_admin_login_is_limited_per_address_like_the_other_sign_ins(tuned_nodes: list[AsgiNode]) -> None:
    """Wrong passwords on /admin/login/: the sign-in limit's worth are answered, then a JSON 429."""
    count, period = _split_rate(settings.CHORUS_ANON_AUTH_RATE)
    # a fixed window per address: start in one with time left for all the attempts
    wait_until(lambda: _get_window("127.0.0.1", period) - time.time() > 15, timeout=period, what="a fresh window")
    statuses, last = [], None
    with httpx.Client(base_url=tuned_nodes[0].http, timeout=15) as client:
        for _ in range(count + 1):
            page = client.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token is not None, page.text[:300]
            form = {"username": "admin", "password": "wrong", "csrfmiddlewaretoken": token[1], "next": "/admin/"}
            last = client.post("/admin/login/", data=form)
            statuses.append(last.status_code)
    assert statuses == [200] * count + [429]
    assert last is not None and last.json()["code"] == "throttled"
    assert int(last.headers["Retry-After"]) == period


def _cookie(response: httpx.Response, name: str) -> str:
    headers = [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]
    assert headers, response.headers
    return headers[0]


def test_chorus_https_makes_cookies_secure_and_sends_hsts(api_user: ApiUser, django_db_setup: None) -> None:
    """CHORUS_HTTPS=1 behind a TLS proxy: Secure session and CSRF cookies, Strict-Transport-Security."""
    env = {"CHORUS_HTTPS": "1", "CHORUS_TRUST_X_FORWARDED_PROTO": "1"}
    node = ServedNode("https-node", env=env).start()
    try:
        node.wait_ready()
        origin = f"https://127.0.0.1:{node.port}"
        proxied = {"X-Forwarded-Proto": "https", "Referer": f"{origin}/accounts/login/"}
        with httpx.Client(base_url=node.http, timeout=15) as client:
            page = client.get("/accounts/login/", headers=proxied)
            assert page.headers["Strict-Transport-Security"].startswith("max-age=")
            csrf = _cookie(page, "csrftoken")
            assert "Secure" in csrf
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token is not None
            login = client.post(
                "/accounts/login/",
                data={"username": api_user.user.username, "password": "pw-for-tests", "csrfmiddlewaretoken": token[1]},
                headers={**proxied, "Cookie": csrf.split(";")[0]},
            )
            assert login.status_code == 302, login.text[:500]
            assert "Secure" in _cookie(login, "sessionid")
    finally:
        node.stop()


def test_without_chorus_https_a_forwarded_proto_is_not_trusted(tuned_nodes: list[AsgiNode]) -> None:
    """By default: no HSTS, and X-Forwarded-Proto from a client changes nothing."""
    page = httpx.get(f"{tuned_nodes[0].http}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, timeout=15)
    assert "Strict-Transport-Security" not in page.headers
    assert "Secure" not in _cookie(page, "csrftoken")
