"""Errors of the key stores. Messages never contain a PIN or passphrase."""

from core.errors import GovpkiError


class HsmError(GovpkiError):
    kind = "hsm"
    http_status = 500


class ModuleNotFound(HsmError):
    kind = "hsm-module-not-found"


class TokenNotFound(HsmError):
    kind = "hsm-token-not-found"


class WrongPin(HsmError):
    kind = "hsm-wrong-pin"
    http_status = 403


class KeyNotFound(HsmError):
    kind = "hsm-key-not-found"
    http_status = 404


class KeyExists(HsmError):
    kind = "hsm-key-exists"
    http_status = 409


class UnsupportedMechanism(HsmError):
    kind = "hsm-unsupported-mechanism"
    http_status = 400


class UnsupportedKeyType(HsmError):
    kind = "unsupported-key-type"
    http_status = 400


class InvalidKeyUri(HsmError):
    kind = "invalid-key-uri"
    http_status = 400


class MissingSecret(HsmError):
    """The PIN or passphrase environment variable is not set (its name is given, not a value)."""

    kind = "hsm-missing-secret"


class DecryptionFailed(HsmError, ValueError):
    """The ciphertext does not decrypt under this key (wrong key, damaged data or padding).

    Also a ValueError, as pyca raises for a software key, so callers of ``Signer.decrypt``
    handle every backend the same way. One message for every cause, so that padding failures
    cannot be told apart (Bleichenbacher / Manger oracles).
    """

    kind = "hsm-decryption-failed"
    http_status = 400
