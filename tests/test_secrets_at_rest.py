"""[store] secret_key: listener passwords and callback credentials sealed in the SQLite file and the PostgreSQL tables."""

import psycopg
import pytest

from gateway.exceptions import ConfigError
from gateway.store import PostgresStore, SqliteStore
from tests.conftest import Listener
from tests.test_config import NEW_KEY, OLD_KEY, serve_at_start_up
from tests.test_delivery_faults import ACCOUNT, SERVICE, add, running_worker, settings, wait_until

LISTENER_PASSWORD = "listener-pw-5b9e1c7d"
OTHER_KEY = "Zr0b6o0aKkX5mYwT9yq3nV2cB8dE1fG4hJ7kL0pQ6sU="


def sqlite_bytes(path):
    """Every byte SQLite keeps of the store: the file, its WAL and its shared memory index."""
    return b"".join(file.read_bytes() for file in path.parent.glob(path.name + "*"))


def fill(store):
    """A registration with a listener password, and the generated callback credentials: the secrets to keep."""
    store.put_registration(ACCOUNT, SERVICE, "http://127.0.0.1:9/listener", "legacy", LISTENER_PASSWORD)
    return store.callback_credentials()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "gateway.sqlite3"


def test_sealed_secrets_are_nowhere_in_the_sqlite_files_and_still_read_back(store_path):
    store = SqliteStore(store_path, secret_keys=(NEW_KEY,))
    try:
        username, password = fill(store)
        on_disk = sqlite_bytes(store_path)  # while open: the WAL holds the writes
        assert (store_path.parent / (store_path.name + "-wal")).stat().st_size > 0, "the WAL was read too"
        assert store.registration(ACCOUNT, SERVICE).password == LISTENER_PASSWORD
        assert [registration.password for registration in store.registrations()] == [LISTENER_PASSWORD]
        assert store.callback_credentials() == (username, password)
    finally:
        store.close()
    for secret in (LISTENER_PASSWORD, username, password):
        assert secret.encode() not in on_disk
    assert b"legacy" in on_disk, "the check would find the secrets were they stored as they are"


@pytest.mark.parametrize("before", ["new", "written without a key"])
def test_sealing_checkpoints_the_wal_empty_so_no_page_as_it_was_is_left_in_it(store_path, before):
    if before == "written without a key":
        plain = SqliteStore(store_path)
        fill(plain)
        plain.close()
    sealed = SqliteStore(store_path, secret_keys=(NEW_KEY,))  # seals in its migration
    try:
        wal = store_path.parent / (store_path.name + "-wal")
        assert wal.stat().st_size == 0, "the checkpoint after sealing did not empty the WAL"
    finally:
        sealed.close()


def test_a_store_written_without_a_key_is_sealed_when_one_is_given(store_path):
    plain = SqliteStore(store_path)
    username, password = fill(plain)
    plain.close()
    assert LISTENER_PASSWORD.encode() in sqlite_bytes(store_path)

    sealed = SqliteStore(store_path, secret_keys=(NEW_KEY,))
    try:
        assert sealed.registration(ACCOUNT, SERVICE).password == LISTENER_PASSWORD
        assert sealed.callback_credentials() == (username, password)
        on_disk = sqlite_bytes(store_path)
    finally:
        sealed.close()
    for secret in (LISTENER_PASSWORD, username, password):
        assert secret.encode() not in on_disk


def test_a_key_is_rotated_by_listing_the_new_one_before_the_old(store_path):
    SqliteStore(store_path, secret_keys=(OLD_KEY,)).close()
    fill(store := SqliteStore(store_path, secret_keys=(OLD_KEY,)))
    store.close()
    SqliteStore(store_path, secret_keys=(NEW_KEY, OLD_KEY)).close()  # sealed again with the new key
    store = SqliteStore(store_path, secret_keys=(NEW_KEY,))
    try:
        assert store.registration(ACCOUNT, SERVICE).password == LISTENER_PASSWORD
    finally:
        store.close()
    with pytest.raises(ConfigError, match=r"\[store\] secret_key: opens none of this store's secrets"):
        SqliteStore(store_path, secret_keys=(OLD_KEY,))


def test_a_sealed_store_without_its_key_stops_with_one_line(store_path):
    SqliteStore(store_path, secret_keys=(NEW_KEY,)).close()
    with pytest.raises(ConfigError, match=r"\[store\] secret_key: is not set, and this store's secrets are sealed"):
        SqliteStore(store_path)


def test_delivery_carries_the_sealed_password_in_the_envelope(store_path):
    listener = Listener()
    store = SqliteStore(store_path, secret_keys=(NEW_KEY,))
    try:
        store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", LISTENER_PASSWORD)
        add(store, "r-sealed")
        worker = running_worker(store, settings())
        try:
            wait_until(lambda: listener.acknowledged(), what="the callback delivered")
        finally:
            worker.stop(timeout=5)
    finally:
        store.close()
        listener.close()
    assert f"<Password>{LISTENER_PASSWORD}</Password>".encode() in listener.acknowledged()[0]
    assert LISTENER_PASSWORD.encode() not in sqlite_bytes(store_path)


def test_sealed_secrets_are_nowhere_in_the_postgresql_tables(postgres_url):
    store = PostgresStore(postgres_url, secret_keys=(NEW_KEY,))
    try:
        username, password = fill(store)
        assert store.registration(ACCOUNT, SERVICE).password == LISTENER_PASSWORD
    finally:
        store.close()
    with psycopg.connect(postgres_url) as db:
        tables = [
            str(row)
            for table in ("registrations", "settings")
            for row in db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - the test's own names
        ]
    assert any("legacy" in row for row in tables), "the check would find the secrets were they stored as they are"
    for secret in (LISTENER_PASSWORD, username, password):
        assert not any(secret in row for row in tables)
    with pytest.raises(ConfigError, match="opens none of this store's secrets"):
        PostgresStore(postgres_url, secret_keys=(OTHER_KEY,))


def test_serve_with_a_wrong_key_stops_with_one_line(store_path):
    SqliteStore(store_path, secret_keys=(NEW_KEY,)).close()
    assert serve_at_start_up({"M2MGW_STORE_PATH": str(store_path), "M2MGW_STORE_SECRET_KEY": OTHER_KEY}) == (
        2,
        [
            "m2m-gateway: configuration error: [store] secret_key: opens none of this store's secrets: they were "
            "sealed with another key (when rotating, list the old key after the new one)"
        ],
    )
