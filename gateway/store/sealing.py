"""The store's secrets at rest: listener passwords and the generated callback credentials.

With ``[store] secret_key`` set they are stored as Fernet tokens
(``cryptography``: AES-128-CBC with an HMAC-SHA256, a timestamp, a random
IV), so that a copy of the SQLite file or of the database does not give
them away. The setting is a comma-separated list of keys: the first
encrypts, every one decrypts. Rotation is a new key first and the old one
after it: at start, what the old one sealed is sealed again with the new
one, and the old one can then be dropped.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["InvalidToken", "Plaintext", "SecretBox"]


class SecretBox:
    def __init__(self, keys):
        self._newest = Fernet(keys[0])
        self._any = MultiFernet([Fernet(key) for key in keys])

    def seal(self, text):
        return None if text is None else self._any.encrypt(text.encode()).decode()

    def open(self, token):
        """The text sealed in ``token``; InvalidToken if none of the keys sealed it (or it was altered)."""
        return None if token is None else self._any.decrypt(token.encode()).decode()

    def reseal(self, token):
        """``token`` sealed again with the first key."""
        return None if token is None else self._any.rotate(token.encode()).decode()

    def sealed_with_newest(self, token):
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


class Plaintext:
    """A store without a secret key keeps its secrets as they are."""

    @staticmethod
    def seal(text):
        return text

    open = seal
