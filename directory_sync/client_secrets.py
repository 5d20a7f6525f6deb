"""Client secrets at rest: a keyed SHA-256 (HMAC) of the secret, not a password hash.

A password hash (PBKDF2) is slow on purpose, to make guessing a low-entropy password
expensive offline. Beem's client secrets are 128 random characters from
``oauth2_provider.generators`` (about 760 bits), which nobody can guess, offline or not, so
the stretching protected nothing; it only made every wrong secret for a known Client
Identifier cost ~0.5 s of CPU (a denial-of-service lever) and ~50× more than an unknown
identifier (a timing oracle telling which identifiers exist). An HMAC-SHA256 keyed with
``SECRET_KEY`` costs microseconds, and a leaked database alone does not let anyone check a
candidate secret. Comparison is constant-time.

Rows written by earlier versions hold django-oauth-toolkit's PBKDF2 hashes; the token
endpoint verifies such a row once the old way and rewrites it in this format
(``SyncOAuth2Validator``), so existing deployments keep working without a rotation.
"""

from django.conf import settings
from django.contrib.auth.hashers import BasePasswordHasher
from django.utils.crypto import constant_time_compare, get_random_string, salted_hmac

ALGORITHM = "beem_client_secret_hmac_sha256"
_KEY_SALT = "beem.directory_sync.client_secret"
_SALT_LENGTH = 16


def _digest(secret: str, salt: str, key: str) -> str:
    return salted_hmac(_KEY_SALT, f"{salt}${secret}", secret=key, algorithm="sha256").hexdigest()


def _keys() -> list[str]:
    # SECRET_KEY_FALLBACKS: rotating SECRET_KEY the Django way keeps stored secrets valid.
    return [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]


def client_secret_hash(secret: str, *, salt: str | None = None) -> str:
    """The stored form of a client secret: ``<algorithm>$<salt>$<hex HMAC>``."""
    salt = salt or get_random_string(_SALT_LENGTH)
    return f"{ALGORITHM}${salt}${_digest(secret, salt, settings.SECRET_KEY)}"


def is_client_secret_hash(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(ALGORITHM + "$")


def client_secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from (constant time)."""
    _algorithm, _sep, rest = (stored or "").partition("$")
    salt, _sep, digest = rest.partition("$")
    if not is_client_secret_hash(stored) or not salt or not digest:
        return False
    matched = False
    for key in _keys():
        # Every key is tried, so the time does not tell which one matched.
        matched |= constant_time_compare(_digest(secret, salt, key), digest)
    return matched


def client_secret_dummy_check(secret: str) -> None:
    """Spend what a real check costs, for a Client Identifier that does not exist."""
    client_secret_matches(secret, f"{ALGORITHM}${'x' * _SALT_LENGTH}${'0' * 64}")


class ClientSecretHasher(BasePasswordHasher):
    """The same format as a Django password hasher (settings.PASSWORD_HASHERS, after the
    default), so that any stock django-oauth-toolkit code path that checks a client secret
    with ``check_password`` verifies it correctly. Never the default: user passwords keep
    PBKDF2."""

    algorithm = ALGORITHM

    def salt(self) -> str:
        return get_random_string(_SALT_LENGTH)

    def encode(self, password: str, salt: str) -> str:
        return client_secret_hash(password, salt=salt)

    def decode(self, encoded: str) -> dict:
        algorithm, salt, digest = encoded.split("$", 2)
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password: str, encoded: str) -> bool:
        return client_secret_matches(password, encoded)

    def safe_summary(self, encoded: str) -> dict:
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "salt": "…", "hash": "…"}

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass
