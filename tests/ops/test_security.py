"""Production settings pass `check --deploy`, secrets come only from the environment, uploads are served as inert
images, and log-in attempts are rate-limited (portal, admin and authenticate() itself)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from artsite import security
from tests.factories import ArtworkFactory

BASE = Path(django_settings.BASE_DIR)


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ARTSITE_", "DATABASE_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="artsite.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="example.org",
        DATABASE_URL="postgres://artsite:pw@db.invalid:5432/artsite",
        CELERY_BROKER_URL="redis://redis.invalid:6379/0",
        ARTSITE_METRICS_TOKEN=secrets.token_urlsafe(32),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE, env=env, capture_output=True, text=True, timeout=120
    )


# --- Production settings ----------------------------------------------------------------------------------------


def test_production_settings_pass_check_deploy_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "ARTSITE_METRICS_TOKEN",
    ],
)
def test_production_takes_secrets_and_services_only_from_the_environment(missing):
    result = manage("check", env=production_env(**{missing: ""}))
    assert result.returncode != 0
    assert (
        missing in result.stderr
    )  # the error names what to set; nothing falls back to a default in the code


def test_no_secret_in_the_production_settings_file():
    text = (BASE / "artsite" / "settings" / "production.py").read_text()
    assert 'SECRET_KEY = env("DJANGO_SECRET_KEY")' in text
    assert "django-insecure" not in text


# --- Uploaded files ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_uploaded_images_are_served_with_inert_headers(curator_client):
    client = curator_client  # originals are for curators
    artwork = ArtworkFactory()
    for name, content_type in ((artwork.image.name, "image/jpeg"), (artwork.thumbnail.name, "image/jpeg")):
        response = client.get(f"/media/{name}")
        assert response.status_code == 200
        assert response["Content-Type"] == content_type
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]
        assert "default-src 'none'" in response["Content-Security-Policy"]
        assert response["Content-Disposition"] == f'inline; filename="{Path(name).name}"'
        assert b"".join(response.streaming_content) == Path(django_settings.MEDIA_ROOT, name).read_bytes()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, body",
    [
        ("artworks/xx/evil.html", b"<script>alert(1)</script>"),
        ("artworks/xx/evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("artworks/xx/evil.htm", b"<script>alert(1)</script>"),
        ("artworks/xx/evil.js", b"alert(1)"),
        ("artworks/xx/noext", b"<script>alert(1)</script>"),
        ("artworks/xx/evil.JPG.html", b"<script>alert(1)</script>"),
    ],
)
def test_anything_but_an_image_is_never_served(client, name, body):
    path = Path(django_settings.MEDIA_ROOT, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    response = client.get(f"/media/{name}")
    assert response.status_code == 404
    assert b"<script>" not in response.content


@pytest.mark.django_db
def test_html_disguised_as_an_image_is_served_as_an_image_in_a_sandbox(curator_client):
    client = curator_client
    path = Path(django_settings.MEDIA_ROOT, "artworks/xx/disguised.jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html><script>alert(1)</script></html>")
    response = client.get("/media/artworks/xx/disguised.jpg")
    assert response["Content-Type"] == "image/jpeg"  # never text/html, whatever the bytes say
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_media_outside_the_folder_is_refused(client):
    assert client.get("/media/../artsite/settings/base.py").status_code == 404
    assert client.get("/media/%2e%2e/%2e%2e/etc/passwd.jpg").status_code == 404


# --- Log-in rate limit ------------------------------------------------------------------------------------------


@pytest.fixture
def limits(settings, broker):  # type: ignore[no-untyped-def]
    settings.ARTSITE_LOGIN_FAILURES = 3
    settings.ARTSITE_LOGIN_IP_FAILURES = 8
    settings.ARTSITE_LOGIN_WINDOW_SECONDS = 60
    security.login_limits_reset()
    yield settings
    security.login_limits_reset()


@pytest.fixture
def person(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("maria", password="right-password-1")


def log_in(client, username: str, password: str, *, ip: str = "203.0.113.5", path: str = "/accounts/login/"):  # type: ignore[no-untyped-def]
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(client) -> bool:  # type: ignore[no-untyped-def]
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_portal_login_is_blocked_after_failures_even_with_the_right_password(client, limits, person):
    for _ in range(3):
        response = log_in(client, "maria", "wrong")
        assert response.status_code == 200 and not logged_in(client)
    response = log_in(client, "maria", "right-password-1")
    assert response.status_code == 429
    assert not logged_in(client)
    assert 0 < int(response["Retry-After"]) <= 60
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "didn't match" not in response.content.decode()  # not a lie about the password


@pytest.mark.django_db
def test_block_is_per_ip_and_username(client, limits, person, django_user_model):
    django_user_model.objects.create_user("jan", password="jans-password-1")
    for _ in range(3):
        log_in(client, "maria", "wrong")
    # The same person from another address, and another person from the same address, still get in.
    assert log_in(client, "maria", "right-password-1", ip="198.51.100.7").status_code == 302
    client.logout()
    assert log_in(client, "jan", "jans-password-1").status_code == 302
    client.logout()
    assert (
        log_in(client, "MARIA", "right-password-1").status_code == 429
    )  # usernames compared case-insensitively


@pytest.mark.django_db
def test_one_address_trying_many_usernames_is_blocked(client, limits, person):
    for i in range(8):
        log_in(client, f"guess{i}", "wrong")
    assert log_in(client, "maria", "right-password-1").status_code == 429


@pytest.mark.django_db
def test_success_clears_the_count(client, limits, person):
    for _ in range(2):
        log_in(client, "maria", "wrong")
    assert log_in(client, "maria", "right-password-1").status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "maria", "wrong")
    assert log_in(client, "maria", "right-password-1").status_code == 302


@pytest.mark.django_db
def test_the_block_ends_with_the_window(client, limits, person, broker):
    for _ in range(3):
        log_in(client, "maria", "wrong")
    assert log_in(client, "maria", "right-password-1").status_code == 429
    for key in broker.scan_iter(f"{security.KEY_PREFIX}:*"):
        assert 0 < broker.ttl(key) <= 60  # every count expires with its window
        broker.delete(key)  # as if the window had passed
    assert log_in(client, "maria", "right-password-1").status_code == 302


@pytest.mark.django_db
def test_admin_login_is_rate_limited_too(client, limits, django_user_model):
    django_user_model.objects.create_superuser("root", password="root-password-1")
    for _ in range(3):
        assert log_in(client, "root", "wrong", path="/admin/login/").status_code == 200
    response = log_in(client, "root", "root-password-1", path="/admin/login/")
    assert response.status_code == 429 and not logged_in(client)
    assert "Too many failed log-in attempts" in response.content.decode()


@pytest.mark.django_db
def test_authenticate_itself_refuses_a_blocked_pair(rf, limits, person):
    from django.contrib.auth import authenticate

    request = rf.post("/", REMOTE_ADDR="203.0.113.9")
    for _ in range(3):
        assert authenticate(request, username="maria", password="wrong") is None
    assert authenticate(request, username="maria", password="right-password-1") is None
    other = rf.post("/", REMOTE_ADDR="203.0.113.10")
    assert authenticate(other, username="maria", password="right-password-1") == person


@pytest.mark.django_db
def test_limit_holds_in_process_memory_while_redis_is_down(client, limits, person, settings, stopped_redis):
    settings.CELERY_BROKER_URL = stopped_redis
    for _ in range(3):
        assert log_in(client, "maria", "wrong").status_code == 200
    assert log_in(client, "maria", "right-password-1").status_code == 429


def test_client_ip_behind_trusted_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")
    settings.ARTSITE_TRUSTED_PROXIES = 0
    assert security.client_ip(request) == "10.0.0.2"  # X-Forwarded-For is ignored unless a proxy is trusted
    settings.ARTSITE_TRUSTED_PROXIES = 1
    assert security.client_ip(request) == "203.0.113.7"


# --- Hardened defaults (issue 15) ---------------------------------------------------------------------------------


def production_setting(expression: str) -> str:
    code = f"from django.conf import settings; print({expression})"
    result = manage("shell", "-c", code, env=production_env())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_production_serves_static_files_under_hashed_names_and_media_behind_a_login():
    assert production_setting("settings.STORAGES['staticfiles']['BACKEND']").endswith(
        "CompressedManifestStaticFilesStorage"
    )
    assert production_setting("settings.ARTSITE_MEDIA_REQUIRES_LOGIN") == "True"


def test_setup_site_refuses_the_development_curator_under_production_settings():
    result = manage("setup_site", "--dev-curator", env=production_env())
    assert result.returncode != 0
    assert "--dev-curator" in result.stderr and "make run" in result.stderr


@pytest.mark.django_db
def test_setup_site_makes_no_account_unless_asked(django_user_model):
    from django.core.management import call_command

    call_command("setup_site", "--no-migrate", stdout=open(os.devnull, "w"))
    assert not django_user_model.objects.exists()
    call_command("setup_site", "--no-migrate", "--dev-curator", stdout=open(os.devnull, "w"))
    assert django_user_model.objects.get(username="curator").check_password("curator")


@pytest.mark.django_db
def test_setup_site_validates_a_given_password(django_user_model):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="password is refused"):
        call_command("setup_site", "--no-migrate", "--username", "keeper", "--password", "keeper")
    assert not django_user_model.objects.exists()
    call_command(
        "setup_site",
        "--no-migrate",
        "--username",
        "keeper",
        "--password",
        "a-Long-pass-9183",
        stdout=open(os.devnull, "w"),
    )
    assert django_user_model.objects.get(username="keeper").is_staff


@pytest.mark.django_db
def test_setup_site_dev_curator_is_refused_when_the_settings_do_not_allow_it(settings, django_user_model):
    from django.core.management import CommandError, call_command

    settings.ARTSITE_DEV_CURATOR_ALLOWED = False
    with pytest.raises(CommandError):
        call_command("setup_site", "--no-migrate", "--dev-curator")
    assert not django_user_model.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/api/v1/docs/"])
def test_pages_carry_a_content_security_policy_without_inline_scripts(client, curator, url):
    client.force_login(curator)
    response = client.get(url)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert (
        "unsafe-inline" not in directives["script-src"] and "unsafe-inline" not in directives["default-src"]
    )
    assert not INLINE_SCRIPT.search(response.content.decode())


INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


def test_no_template_holds_an_inline_script_or_handler():
    templates = [*BASE.glob("templates/**/*.html"), *BASE.glob("*/templates/**/*.html")]
    assert len(templates) > 10
    offenders = [
        str(path.relative_to(BASE))
        for path in templates
        if INLINE_HANDLER.search(path.read_text()) or INLINE_SCRIPT.search(path.read_text())
    ]
    assert offenders == []


def test_the_image_leaves_out_local_state_and_secrets():
    ignored = set((BASE / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env", "staticfiles", "deploy/certs", "*.pem", "*.key"} <= ignored
