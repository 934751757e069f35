"""Configuration: embedded defaults, a file over them, the environment over both."""

import ipaddress
import subprocess
import sys

import pytest

from gateway import config
from gateway.exceptions import ConfigError

# Fernet keys ([store] secret_key), made for these tests.
NEW_KEY = "pdHj3S0kGiwFx6S9u0cWmDQ6ymKZJVw6oCp8wUBlQ-Q="
OLD_KEY = "w6cZ7e8I1sQbq8lZk2qYd9iXh0y8q2m6r7aZ5pK4b3E="

def test_the_callback_url_follows_the_server_unless_configured():
    assert config.load(environ={}).callback_url() == "http://127.0.0.1:8080/callbacks/thingspace"
    behind_proxy = config.load(environ={"M2MGW_SERVER_PUBLIC_URL": "https://m2m.example.com"})
    assert behind_proxy.callback_url() == "https://m2m.example.com/callbacks/thingspace"
    explicit = config.load(environ={"M2MGW_CALLBACKS_PUBLIC_URL": "https://hooks.example.com/ts"})
    assert explicit.callback_url() == "https://hooks.example.com/ts"


def test_embedded_defaults_load_and_point_at_the_simulator():
    settings = config.load(environ={})
    assert settings.server.port == 8080
    assert settings.upstream.base_url == "http://127.0.0.1:8081"
    assert settings.upstream.verify_tls is True
    assert settings.defaults.mdn_zip_code is None


def test_every_key_is_overridden_by_its_environment_variable(tmp_path):
    pem = tmp_path / "listeners.pem"
    pem.write_text("")
    environ = {
        "M2MGW_SERVER_HOST": "0.0.0.0",
        "M2MGW_SERVER_PORT": "9000",
        "M2MGW_SERVER_PUBLIC_URL": "https://m2m.example.com/",
        "M2MGW_SERVER_MAX_BODY_BYTES": "1000",
        "M2MGW_SERVER_WORKERS": "3",
        "M2MGW_SERVER_THREADS": "16",
        "M2MGW_SERVER_READ_TIMEOUT_S": "12",
        "M2MGW_SERVER_TRUSTED_PROXIES": "10.0.0.5, fd00::/64",
        "M2MGW_UPSTREAM_BASE_URL": "https://thingspace.verizon.com",
        "M2MGW_UPSTREAM_OAUTH_CLIENT_ID": "key",
        "M2MGW_UPSTREAM_OAUTH_CLIENT_SECRET": "secret",
        "M2MGW_UPSTREAM_TIMEOUT_S": "2.5",
        "M2MGW_UPSTREAM_VERIFY_TLS": "false",
        "M2MGW_DEFAULTS_MDN_ZIP_CODE": "94203",
        "M2MGW_CALLBACKS_PATH": "/ts/callbacks",
        "M2MGW_CALLBACKS_PUBLIC_URL": "https://m2m.example.com/ts/callbacks",
        "M2MGW_CALLBACKS_USERNAME": "gw",
        "M2MGW_CALLBACKS_PASSWORD": "pw",
        "M2MGW_CALLBACKS_MAX_ATTEMPTS": "7",
        "M2MGW_CALLBACKS_BACKOFF_S": "1.5",
        "M2MGW_CALLBACKS_TIMEOUT_S": "3",
        "M2MGW_CALLBACKS_EXPIRE_AFTER_S": "60",
        "M2MGW_CALLBACKS_CLAIM_LEASE_S": "2.5",
        "M2MGW_CALLBACKS_ALLOWED_LISTENERS": "10.20.0.0/16, fd00::/8,Listener.Example.com., 192.0.2.7",
        "M2MGW_CALLBACKS_DELIVERY_STALL_S": "30",
        "M2MGW_CALLBACKS_ALLOWED_SOURCES": "192.0.2.0/24",
        "M2MGW_CALLBACKS_CA_BUNDLE": str(pem),
        "M2MGW_CALLBACKS_CLIENT_CERT": str(pem),
        "M2MGW_CALLBACKS_CLIENT_KEY": str(pem),
        "M2MGW_STORE_PATH": "/srv/m2m/gateway.sqlite3",
        "M2MGW_STORE_URL": "postgresql://m2m:secret@db.example.com/m2m",
        "M2MGW_STORE_RETAIN_S": "3600",
        "M2MGW_STORE_SECRET_KEY": f"{NEW_KEY}, {OLD_KEY}",
        "M2MGW_LOGGING_FORMAT": "json",
        "M2MGW_LOGGING_LEVEL": "warning",
    }
    settings = config.load(environ=environ)
    assert settings.server == config.Server("0.0.0.0", 9000, "https://m2m.example.com", 1000, 3, 16, 12.0,
        (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("fd00::/64")),
    )
    assert settings.upstream == config.Upstream("https://thingspace.verizon.com", "key", "secret", 2.5, False)
    assert settings.defaults.mdn_zip_code == "94203"
    assert settings.callbacks == config.Callbacks(
        "/ts/callbacks", "https://m2m.example.com/ts/callbacks", "gw", "pw", 7, 1.5, 3.0, 60.0, 2.5,
        (
            ipaddress.ip_network("10.20.0.0/16"),
            ipaddress.ip_network("fd00::/8"),
            "listener.example.com",
            ipaddress.ip_network("192.0.2.7/32"),
        ),
        30.0,
        (ipaddress.ip_network("192.0.2.0/24"),),
        str(pem),
        str(pem),
        str(pem),
    )
    assert settings.store == config.Store(
        "/srv/m2m/gateway.sqlite3", "postgresql://m2m:secret@db.example.com/m2m", 3600.0, (NEW_KEY, OLD_KEY)
    )
    assert settings.logging == config.Logging("json", "WARNING")
    assert len(environ) == len(config.SCHEMA), "a key of the schema has no test here"


def test_a_file_is_read_over_the_defaults_and_under_the_environment(tmp_path):
    path = tmp_path / "site.ini"
    path.write_text("[server]\nport = 9100\n[defaults]\nmdn_zip_code = 10001\n")
    settings = config.load(path, environ={"M2MGW_SERVER_PORT": "9200"})
    assert settings.server.port == 9200
    assert settings.defaults.mdn_zip_code == "10001"
    assert settings.upstream.base_url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    "environ, section, key, phrase",
    [
        ({"M2MGW_SERVER_PORT": "eighty"}, "server", "port", "whole number"),
        ({"M2MGW_SERVER_PORT": "70000"}, "server", "port", "1 to 65535"),
        ({"M2MGW_UPSTREAM_BASE_URL": "ftp://x"}, "upstream", "base_url", "http"),
        ({"M2MGW_UPSTREAM_OAUTH_CLIENT_ID": ""}, "upstream", "oauth_client_id", "must not be empty"),
        ({"M2MGW_UPSTREAM_TIMEOUT_S": "0"}, "upstream", "timeout_s", "greater than 0"),
        ({"M2MGW_UPSTREAM_VERIFY_TLS": "maybe"}, "upstream", "verify_tls", "true or false"),
        ({"M2MGW_SERVER_MAX_BODY_BYTES": "-1"}, "server", "max_body_bytes", "greater than 0"),
        ({"M2MGW_SERVER_PROT": "1"}, "environment", "M2MGW_SERVER_PROT", "not a known setting"),
        ({"M2MGW_CALLBACKS_PATH": "callbacks"}, "callbacks", "path", "URL path"),
        ({"M2MGW_CALLBACKS_MAX_ATTEMPTS": "0"}, "callbacks", "max_attempts", "greater than 0"),
        ({"M2MGW_CALLBACKS_USERNAME": "gw"}, "callbacks", "password", "together"),
        ({"M2MGW_CALLBACKS_CLAIM_LEASE_S": "0.5"}, "callbacks", "claim_lease_s", "from 1 to 3600 seconds, got '0.5'"),
        ({"M2MGW_CALLBACKS_CLAIM_LEASE_S": "86400"}, "callbacks", "claim_lease_s", "from 1 to 3600 seconds"),
        ({"M2MGW_CALLBACKS_CLAIM_LEASE_S": "ten"}, "callbacks", "claim_lease_s", "a number of seconds"),
        ({"M2MGW_CALLBACKS_ALLOWED_LISTENERS": "10.0.0.0/8, http://x"}, "callbacks", "allowed_listeners", "'http://x'"),
        ({"M2MGW_CALLBACKS_ALLOWED_LISTENERS": "10.0.0.0/33"}, "callbacks", "allowed_listeners", "networks (CIDR)"),
        ({"M2MGW_CALLBACKS_ALLOWED_SOURCES": "192.0.2.0/24, thingspace.com"}, "callbacks", "allowed_sources", "networks (CIDR) separated"),
        ({"M2MGW_CALLBACKS_CA_BUNDLE": "/nowhere/ca.pem"}, "callbacks", "ca_bundle", "a file this process can read"),
        ({"M2MGW_CALLBACKS_CLIENT_KEY": "/etc/hostname"}, "callbacks", "client_key", "needs client_cert"),
        ({"M2MGW_STORE_PATH": ""}, "store", "path", "must not be empty"),
        ({"M2MGW_STORE_SECRET_KEY": f"{NEW_KEY},hunter2"}, "store", "secret_key", "key 2 is not a Fernet key"),
        ({"M2MGW_LOGGING_FORMAT": "xml"}, "logging", "format", "one of text, json"),
    ],
)
def test_a_bad_value_names_its_key(environ, section, key, phrase):
    with pytest.raises(ConfigError) as raised:
        config.load(environ=environ)
    assert (raised.value.section, raised.value.key) == (section, key)
    assert phrase in str(raised.value)


def test_an_unknown_key_in_a_file_is_refused(tmp_path):
    path = tmp_path / "site.ini"
    path.write_text("[upstream]\nbase_ulr = http://x\n")
    with pytest.raises(ConfigError, match=r"\[upstream\] base_ulr: is not a known setting"):
        config.load(path, environ={})


def test_secrets_stay_out_of_the_settings_repr():
    settings = config.load(
        environ={
            "M2MGW_UPSTREAM_OAUTH_CLIENT_SECRET": "s3cr3t-value",
            "M2MGW_CALLBACKS_USERNAME": "cb-user-value",
            "M2MGW_CALLBACKS_PASSWORD": "cb-pass-value",
            "M2MGW_STORE_SECRET_KEY": NEW_KEY,
        }
    )
    assert not {"s3cr3t-value", "cb-user-value", "cb-pass-value", NEW_KEY} & set(repr(settings).split("'"))


def serve_at_start_up(environ):
    """``m2m-gateway serve`` with only ``environ``: its exit status and the lines of its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={**environ, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.process
def test_serve_stops_at_start_up_with_one_line_naming_the_key():
    assert serve_at_start_up({"M2MGW_UPSTREAM_TIMEOUT_S": "soon"}) == (
        2,
        ["m2m-gateway: configuration error: [upstream] timeout_s: must be a number of seconds, got 'soon'"],
    )

