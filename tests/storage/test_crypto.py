"""Unit tests for storage.crypto: scrypt password hashes, HKDF sub-keys and the Fernet KeyBox."""

from __future__ import annotations

import base64
import hashlib

import pytest

from storage.crypto import InvalidToken, KeyBox, derive_key, hash_password, verify_password

SECRET = "s" * 32


@pytest.fixture(scope="module")
def hashed() -> str:
    """One hash of "correct horse" shared by the tests (scrypt costs ~50 ms)."""
    return hash_password("correct horse")


def test_hash_format(hashed):
    algo, n, r, p, salt, key = hashed.split("$")
    assert (algo, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(key)) == 32
    assert hashed.isascii()


def test_hash_matches_scrypt_of_its_salt(hashed):
    """The stored key is exactly scrypt(password, salt, N=2**14, r=8, p=1, dklen=32)."""
    _, _, _, _, salt, key = hashed.split("$")
    expected = hashlib.scrypt(
        b"correct horse", salt=base64.b64decode(salt), n=2**14, r=8, p=1, dklen=32
    )
    assert base64.b64decode(key) == expected


def test_verify_right_password(hashed):
    assert verify_password("correct horse", hashed) is True


@pytest.mark.parametrize("wrong", ["correct horsE", "correct horse ", "", "x"])
def test_verify_wrong_password(hashed, wrong):
    assert verify_password(wrong, hashed) is False


def test_same_password_gets_a_new_salt_each_time(hashed):
    again = hash_password("correct horse")
    assert again != hashed
    assert again.split("$")[4] != hashed.split("$")[4]
    assert verify_password("correct horse", again) is True


def test_unicode_password():
    encoded = hash_password("pässwörd ✓")
    assert verify_password("pässwörd ✓", encoded) is True
    assert verify_password("passwoerd ✓", encoded) is False


def test_empty_password_rejected():
    with pytest.raises(ValueError, match="^password must not be empty$"):
        hash_password("")


def test_verify_honours_parameters_stored_in_the_hash():
    """A hash made with other cost parameters (e.g. an older, cheaper N) still verifies."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=8, p=1, dklen=24)
    b64 = base64.b64encode
    encoded = f"scrypt${2**10}$8$1${b64(salt).decode()}${b64(key).decode()}"
    assert verify_password("pw", encoded) is True
    assert verify_password("pW", encoded) is False


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "not a hash",
        "scrypt$16384$8$1$c2FsdA==",  # five parts
        "scrypt$16384$8$1$c2FsdA==$a2V5$extra",  # seven parts
        "bcrypt$16384$8$1$c2FsdA==$a2V5",  # other algorithm
        "scrypt$lots$8$1$c2FsdA==$a2V5",  # N not an int
        "scrypt$16384$8$1$!!!$a2V5",  # salt not base64
        "scrypt$16384$8$1$c2FsdA==$a2V",  # key badly padded
        "scrypt$1000$8$1$c2FsdA==$a2V5",  # N not a power of two
        "scrypt$16384$8$1$c2FsdA==$",  # empty key
        "scrypt$1048576$8$1$c2FsdA==$a2V5",  # N too big for scrypt's memory limit
    ],
)
def test_malformed_hash_is_false(encoded):
    assert verify_password("anything", encoded) is False


def test_verify_password_that_cannot_be_encoded(hashed):
    """A lone surrogate (from a bad JSON body) does not raise."""
    assert verify_password("\ud800", hashed) is False


# -- derive_key --------------------------------------------------------------------------------


def test_derive_key_is_deterministic_and_sized():
    assert derive_key(SECRET, "jwt") == derive_key(SECRET, "jwt")
    assert len(derive_key(SECRET, "jwt")) == 32
    assert len(derive_key(SECRET, "jwt", length=16)) == 16


def test_derive_key_purposes_differ():
    keys = {derive_key(SECRET, purpose) for purpose in ("jwt", "fernet", "csrf", "")}
    assert len(keys) == 4


def test_derive_key_secrets_differ():
    assert derive_key(SECRET, "jwt") != derive_key(SECRET + "x", "jwt")


def test_derive_key_is_not_the_secret_itself():
    assert derive_key("k" * 32, "jwt") != b"k" * 32


def test_derive_key_known_value():
    """HKDF-SHA256 with no salt and info=purpose (RFC 5869), pinned so keys stay stable."""
    import hmac

    prk = hmac.new(b"\x00" * 32, SECRET.encode(), hashlib.sha256).digest()
    okm = hmac.new(prk, b"jwt" + b"\x01", hashlib.sha256).digest()
    assert derive_key(SECRET, "jwt") == okm


# -- KeyBox ------------------------------------------------------------------------------------


def test_keybox_round_trip():
    box = KeyBox(SECRET)
    token = box.encrypt("PKTEST123/secret+=")
    assert token.isascii()
    assert "PKTEST123" not in token
    assert box.decrypt(token) == "PKTEST123/secret+="


def test_keybox_round_trip_unicode_and_empty():
    box = KeyBox(SECRET)
    assert box.decrypt(box.encrypt("ключ ✓")) == "ключ ✓"
    assert box.decrypt(box.encrypt("")) == ""


def test_keybox_tokens_are_randomised():
    box = KeyBox(SECRET)
    assert box.encrypt("same") != box.encrypt("same")


def test_keybox_same_secret_in_another_instance_decrypts():
    """What a restart does: a new KeyBox from the same SECRET_KEY reads stored keys."""
    assert KeyBox(SECRET).decrypt(KeyBox(SECRET).encrypt("k")) == "k"


def test_keybox_other_secret_key_is_invalid_token():
    token = KeyBox(SECRET).encrypt("k")
    with pytest.raises(InvalidToken):
        KeyBox(SECRET + "-rotated").decrypt(token)


@pytest.mark.parametrize("token", ["", "garbage", "gAAAAA"])
def test_keybox_garbage_is_invalid_token(token):
    with pytest.raises(InvalidToken):
        KeyBox(SECRET).decrypt(token)


def test_keybox_altered_token_is_invalid():
    box = KeyBox(SECRET)
    token = box.encrypt("secret")
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 1  # flip one bit of the HMAC
    with pytest.raises(InvalidToken):
        box.decrypt(base64.urlsafe_b64encode(bytes(raw)).decode())
