"""The token endpoint under abuse and during rotation: no token survives a new client secret,
secrets are checked at the same (small) cost for known and unknown Client Identifiers,
conflicting credentials are a client authentication failure, and floods get 429."""

import base64
import statistics
import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import global_settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from directory_sync import services
from directory_sync.models import SyncSettings
from directory_sync.scim import auth
from members import services as member_services

from .conftest import SCIMClient, token_obtain


@pytest.fixture
def rate_limits(settings):
    """Turn the token endpoint's limits on (tests/conftest.py turns them off) on a clean cache."""
    cache.clear()
    yield settings
    cache.clear()


def _scim_status(organization, token: str) -> int:
    return SCIMClient(organization=organization, token=token).get("/Users").status_code


# --- rotation ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_token_issued_during_a_rotation_survives_it(require_postgres, monkeypatch):
    """Token requests that authenticated with the old secret before the rotation committed
    and store their token after it (seen: 7 of 36 such tokens valid 20 s later) get no token,
    or one the SCIM endpoint refuses."""
    organization = member_services.organization_get_or_create(slug="race", name="Race")
    old = services.sync_activate(organization=organization, actor_label="test")
    held = 6
    authenticated = threading.Semaphore(0)
    rotated = threading.Event()
    original = auth.SyncOAuth2Validator.validate_scopes
    holding = threading.local()

    def validate_scopes(self, *args, **kwargs):
        # Called after client authentication, before the token is stored: the held requests
        # wait here until the rotation has committed.
        if getattr(holding, "hold", False):
            authenticated.release()
            rotated.wait(timeout=30)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(auth.SyncOAuth2Validator, "validate_scopes", validate_scopes)
    issued: list[str] = []
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def request_tokens(*, hold: bool, repeat: int) -> None:
        holding.hold = hold
        client = Client()
        try:
            for _ in range(repeat):
                response = token_obtain(old.client_id, old.client_secret, client=client)
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        issued.append(response.json()["access_token"])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=request_tokens, kwargs={"hold": True, "repeat": 1})
        for _ in range(held)
    ] + [
        threading.Thread(target=request_tokens, kwargs={"hold": False, "repeat": 15})
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for _ in range(held):
        assert authenticated.acquire(timeout=30)
    new = services.credentials_issue(organization=organization, actor_label="test")
    rotated.set()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert len(statuses) == held + 30
    assert set(statuses) <= {200, 401}
    # Every request held across the rotation was refused (its secret is no longer the one stored).
    assert statuses.count(401) >= held
    auth.auth_cache_clear()
    time.sleep(0.01)
    survivors = [token for token in issued if _scim_status(organization, token) != 401]
    assert survivors == []
    assert new.client_id == old.client_id
    fresh = token_obtain(new.client_id, new.client_secret)
    assert fresh.status_code == 200
    assert _scim_status(organization, fresh.json()["access_token"]) == 200


def test_token_created_before_the_current_secret_is_refused_by_scim(organization, credentials):
    token = token_obtain(credentials.client_id, credentials.client_secret).json()["access_token"]
    assert _scim_status(organization, token) == 200

    # As if the secret had been replaced without its tokens being deleted (a token stored
    # after the delete, or a lookup cached by another process).
    SyncSettings.objects.filter(organization=organization).update(
        credentials_created_at=timezone.now() + timedelta(seconds=1)
    )
    auth.auth_cache_clear()

    response = SCIMClient(organization=organization, token=token).get("/Users")
    assert response.status_code == 401
    assert response.json()["detail"] == "The access token is invalid or was revoked."
    assert AccessToken.objects.count() == 1


# --- secret storage and cost -------------------------------------------------------------


def _wrong_secret_seconds(client_id: str, rounds: int = 5) -> float:
    """CPU seconds (of this thread, where the test client runs the view) per wrong secret:
    what a flood costs the server, unaffected by other programs on the machine."""
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        assert token_obtain(client_id, "not-the-secret").status_code == 401
        timings.append(time.thread_time() - started)
    return statistics.median(timings)


def test_wrong_secret_costs_the_same_for_known_and_unknown_client_ids(settings, organization):
    # Django's real hashers (PBKDF2 first), not the tests' fast MD5: secrets used to be
    # PBKDF2-hashed, ~0.5 s per wrong guess for a known Client Identifier.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    issued = services.sync_activate(organization=organization, actor_label="test")
    _wrong_secret_seconds("warm-up", rounds=1)

    known = _wrong_secret_seconds(issued.client_id)
    unknown = _wrong_secret_seconds("no-such-client-id")

    assert known < 0.05, known
    assert abs(known - unknown) < 0.02, (known, unknown)


def test_a_secret_stored_by_an_earlier_version_works_and_is_upgraded(settings, organization):
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    issued = services.sync_activate(organization=organization, actor_label="test")
    legacy = make_password(issued.client_secret)  # django-oauth-toolkit's PBKDF2 hash
    Application.objects.filter(client_id=issued.client_id).update(
        client_secret=legacy, hash_client_secret=True
    )

    assert token_obtain(issued.client_id, "not-the-secret").status_code == 401
    assert Application.objects.get(client_id=issued.client_id).client_secret == legacy
    first = token_obtain(issued.client_id, issued.client_secret)

    assert first.status_code == 200
    application = Application.objects.get(client_id=issued.client_id)
    assert application.client_secret.startswith("beem_client_secret_hmac_sha256$")
    assert application.hash_client_secret is False
    assert token_obtain(issued.client_id, issued.client_secret).status_code == 200
    assert token_obtain(issued.client_id, "not-the-secret").status_code == 401


def test_stock_password_checks_verify_the_stored_form(settings, credentials):
    # django-oauth-toolkit's own check (check_password) of a stored secret, should any stock
    # code path use it, agrees with ours: never a plaintext comparison with the stored form.
    settings.PASSWORD_HASHERS = [
        *global_settings.PASSWORD_HASHERS,
        "directory_sync.client_secrets.ClientSecretHasher",
    ]
    stored = Application.objects.get(client_id=credentials.client_id).client_secret

    assert check_password(credentials.client_secret, stored)
    assert not check_password(stored, stored)
    assert not check_password("not-the-secret", stored)


def test_stored_secrets_survive_a_secret_key_rotation_with_fallbacks(settings, credentials):
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    assert token_obtain(credentials.client_id, credentials.client_secret).status_code == 200
    assert token_obtain(credentials.client_id, "not-the-secret").status_code == 401


# --- conflicting credentials -------------------------------------------------------------


def test_basic_and_body_naming_different_clients_is_invalid_client(credentials, other_credentials):
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    response = Client().post(
        "/o/token/",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": other_credentials.client_id,
                "client_secret": other_credentials.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(pair).decode(),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert AccessToken.objects.count() == 0


def test_basic_and_body_naming_the_same_client_get_a_token(credentials):
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    response = Client().post(
        "/o/token/",
        data=urlencode({"grant_type": "client_credentials", "client_id": credentials.client_id}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(pair).decode(),
    )

    assert response.status_code == 200


# --- rate limits -------------------------------------------------------------------------


def _assert_too_many(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"] == "temporarily_unavailable"


def test_requests_naming_one_client_id_are_limited_per_minute(
    rate_limits, credentials, other_credentials
):
    rate_limits.BEEM_TOKEN_RATE_LIMIT = 3

    answers = [
        token_obtain(credentials.client_id, credentials.client_secret).status_code for _ in range(3)
    ]
    limited = token_obtain(credentials.client_id, credentials.client_secret)
    body_limited = token_obtain(credentials.client_id, "guess", basic=False)

    assert answers == [200, 200, 200]
    _assert_too_many(limited)
    _assert_too_many(body_limited)
    other = token_obtain(other_credentials.client_id, other_credentials.client_secret)
    assert other.status_code == 200


def test_failed_authentications_from_one_address_are_limited(rate_limits, credentials):
    rate_limits.BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS = 3

    guesses = [token_obtain(f"guess-{n}", "nothing").status_code for n in range(3)]
    limited = token_obtain(credentials.client_id, credentials.client_secret)
    elsewhere = Client(REMOTE_ADDR="203.0.113.9")
    from_elsewhere = token_obtain(
        credentials.client_id, credentials.client_secret, client=elsewhere
    )

    assert guesses == [401, 401, 401]
    _assert_too_many(limited)
    assert from_elsewhere.status_code == 200


def test_successful_requests_do_not_count_against_the_address(rate_limits, credentials):
    rate_limits.BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS = 2

    answers = [
        token_obtain(credentials.client_id, credentials.client_secret).status_code for _ in range(4)
    ]

    assert answers == [200, 200, 200, 200]
