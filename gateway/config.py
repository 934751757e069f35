"""Configuration: an INI file, every key overridable by ``M2MGW_<SECTION>_<KEY>``.

The embedded defaults are ``conf/gateway.ini`` (shipped in the package as
``defaults.ini``). A file given with ``--config`` is read over them, then the
environment over both. Every value is checked here, at start-up, so that a bad
one stops the process with one line naming the key instead of failing later
on the first request that needs it.
"""

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from gateway.exceptions import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("defaults.ini")
ENV_PREFIX = "M2MGW_"


def _text(value):
    return value.strip()


def _port(value):
    port = _integer(value)
    if not 0 < port < 65536:
        raise ValueError(f"must be a TCP port from 1 to 65535, got {port}")
    return port


def _integer(value):
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def _positive_integer(value):
    number = _integer(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {number}")
    return number


def _seconds(value):
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return seconds


def _seconds_between(low, high):
    """A number of seconds from ``low`` to ``high``."""

    def seconds_between(value):
        seconds = _seconds(value)
        if not low <= seconds <= high:
            raise ValueError(f"must be from {low:g} to {high:g} seconds, got {value!r}")
        return seconds

    return seconds_between


def _boolean(value):
    states = configparser.ConfigParser.BOOLEAN_STATES
    if value.lower() not in states:
        raise ValueError(f"must be true or false, got {value!r}")
    return states[value.lower()]


def _url(value):
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _path(value):
    if not value.startswith("/") or value.endswith("/") or "?" in value:
        raise ValueError(f"must be a URL path like /callbacks/thingspace, got {value!r}")
    return value


def _postgres_url(value):
    scheme = urlsplit(value).scheme
    if scheme not in ("postgresql", "postgres"):
        # Not the value itself in the message: it may hold a password.
        got = f"a {scheme}: URL" if scheme else "no URL scheme"
        raise ValueError(f"must be a postgresql:// URL, or empty for the SQLite file at path; got {got}")
    return value


_HOST_NAME = re.compile(r"(?i)^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


def _networks(value):
    """A comma-separated list of networks (CIDR, or one address)."""
    return _networks_and_host_names(value, names=False)


def _networks_and_host_names(value, names=True):
    """A comma-separated list of networks (CIDR, or one address) and (``names``) host names."""
    entries = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            entries.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            if not (names and _HOST_NAME.match(item)):
                what = "networks (CIDR) and host names" if names else "networks (CIDR)"
                raise ValueError(f"must be {what} separated by commas, got {item!r}") from None
            entries.append(item.rstrip(".").lower())
    return tuple(entries)


def _readable_file(value):
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError(f"must be a file this process can read, got {value!r}")
    return value


def _secret_keys(value):
    """Comma-separated Fernet keys, the newest first."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            # Not the key itself in the message: it is a secret.
            raise ValueError(
                f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    return tuple(keys)


def _one_of(value, choices):
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _optional(parse):
    def optional(value):
        return parse(value) if value else None

    return optional


def _required(value):
    if not value:
        raise ValueError("must not be empty")
    return value


def _key(parse):
    """A setting: a field of its section's dataclass, read from its raw text by ``parse``."""
    return field(metadata={"parse": parse})


# Each [section] is a frozen dataclass, each of its keys a field declared with
# _key(parser); SCHEMA below is read from them. Add a key there and only there
# (and in conf/gateway.ini and the README). The names are the product's public
# interface.
@dataclass(frozen=True)
class Server:
    host: str = _key(_required)
    port: int = _key(_port)
    public_url: str | None = _key(_optional(_url))
    max_body_bytes: int = _key(_positive_integer)
    workers: int = _key(_positive_integer)
    threads: int = _key(_positive_integer)
    read_timeout_s: float = _key(_seconds)
    trusted_proxies: tuple = _key(_networks)


@dataclass(frozen=True)
class Upstream:
    base_url: str = _key(_url)
    oauth_client_id: str = _key(_required)
    oauth_client_secret: str = _key(_required)
    timeout_s: float = _key(_seconds)
    verify_tls: bool = _key(_boolean)

    def __repr__(self):
        # Keep the secret out of any log line or traceback that prints this.
        return f"Upstream(base_url={self.base_url!r}, oauth_client_id={self.oauth_client_id!r}, ...)"


@dataclass(frozen=True)
class Defaults:
    mdn_zip_code: str | None = _key(_optional(_text))


@dataclass(frozen=True)
class Callbacks:
    path: str = _key(_path)
    public_url: str | None = _key(_optional(_url))
    username: str | None = _key(_optional(_text))
    password: str | None = _key(_optional(_text))
    max_attempts: int = _key(_positive_integer)
    backoff_s: float = _key(_seconds)
    timeout_s: float = _key(_seconds)
    expire_after_s: float = _key(_seconds)
    # Renewed four times a lease: under 1 s that is a store write every few
    # tens of ms per process; past an hour a dead instance's callbacks wait as long.
    claim_lease_s: float = _key(_seconds_between(1, 3600))
    allowed_listeners: tuple = _key(_networks_and_host_names)
    delivery_stall_s: float = _key(_seconds)
    allowed_sources: tuple = _key(_networks)
    ca_bundle: str | None = _key(_optional(_readable_file))
    client_cert: str | None = _key(_optional(_readable_file))
    client_key: str | None = _key(_optional(_readable_file))

    def __repr__(self):
        return f"Callbacks(path={self.path!r}, public_url={self.public_url!r}, ...)"


@dataclass(frozen=True)
class Store:
    path: str = _key(_required)
    url: str | None = _key(_optional(_postgres_url))
    retain_s: float = _key(_seconds)
    # Default none (the secrets are stored as they are), for Store values built in code.
    secret_key: tuple = field(default=(), metadata={"parse": _secret_keys})

    def __repr__(self):
        # The URL may hold the database password; the key is one.
        return f"Store(path={self.path!r}, url={'...' if self.url else None}, ...)"


@dataclass(frozen=True)
class Logging:
    format: str = _key(lambda value: _one_of(value, ("text", "json")))
    level: str = _key(lambda value: _one_of(value.upper(), ("DEBUG", "INFO", "WARNING", "ERROR")))


@dataclass(frozen=True)
class Config:
    server: Server
    upstream: Upstream
    defaults: Defaults
    callbacks: Callbacks
    store: Store
    logging: Logging

    def callback_url(self):
        """The URL ThingSpace posts callbacks to (the receiver, as the world reaches it)."""
        if self.callbacks.public_url:
            return self.callbacks.public_url
        base = self.server.public_url or f"http://{self.server.host}:{self.server.port}"
        return base + self.callbacks.path


_SECTIONS = {section.name: section.type for section in fields(Config)}
# (section, key) -> parser, in the order the sections and their fields are declared.
SCHEMA = {
    (name, key.name): key.metadata["parse"] for name, section in _SECTIONS.items() for key in fields(section)
}


def load(path=None, environ=None):
    """Read the defaults, then ``path``, then the environment; check every key."""
    environ = os.environ if environ is None else environ
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEFAULTS_FILE, encoding="utf-8")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                parser.read_file(file)
        except OSError as error:
            raise ConfigError("config", str(path), f"cannot be read: {error.strerror}") from None
        except configparser.Error as error:
            raise ConfigError("config", str(path), f"is not a valid INI file: {error.message}") from None
    _reject_unknown(parser, environ)

    values = {section: {} for section in _SECTIONS}
    for (section, key), parse in SCHEMA.items():
        raw = environ.get(f"{ENV_PREFIX}{section}_{key}".upper())
        if raw is None:
            raw = parser.get(section, key, fallback="")
        try:
            values[section][key] = parse(raw.strip())
        except ValueError as error:
            raise ConfigError(section, key, str(error)) from None
    callbacks = values["callbacks"]
    if bool(callbacks["username"]) != bool(callbacks["password"]):
        missing = "password" if callbacks["username"] else "username"
        raise ConfigError("callbacks", missing, "must be set together with the other of username and password")
    if callbacks["client_key"] and not callbacks["client_cert"]:
        raise ConfigError("callbacks", "client_key", "needs client_cert, the certificate it is the key of")
    return Config(**{name: cls(**values[name]) for name, cls in _SECTIONS.items()})


def _reject_unknown(parser, environ):
    # A misspelt key would otherwise be ignored silently and its default used.
    for section in parser.sections():
        for key in parser[section]:
            if (section, key) not in SCHEMA:
                raise ConfigError(section, key, "is not a known setting")
    known = {f"{ENV_PREFIX}{section}_{key}".upper() for section, key in SCHEMA}
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in known:
            raise ConfigError("environment", name, "is not a known setting")
