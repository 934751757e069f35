"""What only the PostgreSQL store does: its schema version table, its row locks, its connections.

Everything both backends do is in test_store_contract.py; these run against
the session's throwaway server (tests/conftest_postgres.py).
"""

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from gateway.store import PostgresStore
from gateway.store.records import ReceivedCallback, Settlement

pytestmark = pytest.mark.process

NOW = 1_000.0
LATEST = len(PostgresStore.MIGRATIONS)
ACCOUNT, SERVICE, URL = "0000123456-00001", "GoToState", "http://listener.example/callbacks"


@pytest.fixture
def store(postgres_url):
    store = PostgresStore(postgres_url)
    yield store
    store.close()


def add(store, key):
    return store.add_callback(key, ACCOUNT, SERVICE, f"request-{key}", "{}", NOW)


def test_the_schema_is_created_on_first_open_and_its_version_kept_in_a_table(store, postgres_url):
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]
        tables = {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"settings", "registrations", "requests", "outbox", "attempts", "schema_version"} <= tables
    PostgresStore(postgres_url).close()  # a second start finds it done
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]


def test_a_database_with_a_newer_schema_is_refused(store, postgres_url):
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (%s)", (LATEST + 1,))
    with pytest.raises(RuntimeError, match=f"schema version {LATEST + 1}, newer than this gateway's {LATEST}"):
        PostgresStore(postgres_url)


def test_a_claim_skips_the_entries_another_claimer_has_locked_instead_of_waiting(store, postgres_url):
    store.put_registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    add(store, "a")
    add(store, "b")
    with psycopg.connect(postgres_url) as other, ThreadPoolExecutor(1) as pool:
        # A claimer on another host, between its SELECT ... FOR UPDATE and its commit.
        other.execute("SELECT id FROM outbox WHERE request_id = 'request-a' FOR UPDATE")
        claimed = pool.submit(store.claim_due, "w", NOW, 30, 10).result(timeout=5)
        assert [delivery.request_id for delivery in claimed] == ["request-b"]


def test_connections_the_server_dropped_are_replaced_on_the_next_call(store, postgres_url):
    store.put_registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    with ThreadPoolExecutor(4) as pool:  # several connections, all idle afterwards
        list(pool.map(lambda n: add(store, f"key-{n}"), range(20)))

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        dropped = admin.execute(
            """SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()) AS terminated"""
        ).fetchone()[0]
    assert dropped >= 1

    assert store.counts()["pending"] == 20
    assert add(store, "after") is True
    assert len(store.claim_due("w", NOW, 30, 100)) == 21


def test_a_closed_store_gives_its_connections_back_to_the_server(store, postgres_url):
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: add(store, f"key-{n}"), range(20)))

    # One observer connection, each query its own transaction (a fresh view of
    # pg_stat_activity): a connection per look would leave the backend of the
    # previous look for the next to count, as it goes a moment after its client.
    with psycopg.connect(postgres_url, autocommit=True) as observer:

        def connections():
            return observer.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]

        assert 1 <= connections() <= 4
        store.close()
        deadline = time.monotonic() + 5  # a backend goes a moment after its client hangs up
        while connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connections() == 0


def test_the_unflushed_request_memory_leaves_every_other_commit_flushed(store):
    store.remember_request("r", {}, NOW, account="a", devices=1)
    # The same connection, back in the pool: the setting was for that transaction only.
    assert {row[0] for row in store._read("SHOW synchronous_commit")} == {"on"}
    assert store.forwarded_request("r").devices == 1


@pytest.mark.parametrize("batch", ["settle", "renew_claims"])
def test_batches_lock_their_rows_in_id_order_so_that_two_batches_never_deadlock(store, postgres_url, batch):
    store.put_registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    add(store, "a")
    add(store, "b")
    low, high = sorted(delivery.id for delivery in store.claim_due("w", NOW, 30, 10))
    calls = {
        "settle": lambda: store.settle([Settlement(high, "w", NOW + 1), Settlement(low, "w", NOW + 1)]),
        "renew_claims": lambda: store.renew_claims("w", [high, low], NOW + 60),
    }
    with psycopg.connect(postgres_url) as holder, psycopg.connect(postgres_url, autocommit=True) as probe:
        with ThreadPoolExecutor(1) as pool:
            holder.execute("SELECT id FROM outbox WHERE id = %s FOR UPDATE", (high,))
            # Given the higher id first, the batch locks the lower one first, then waits for the higher.
            batched = pool.submit(calls[batch])
            try:
                deadline = time.monotonic() + 5
                while not _locked(probe, low):
                    assert time.monotonic() < deadline, "the batch did not lock the lower id while waiting for the higher"
                    time.sleep(0.02)
                assert not batched.done()
            finally:
                holder.rollback()
            batched.result(timeout=5)
    if batch == "settle":
        assert store.counts()["delivered"] == 2


def _locked(db, id):
    try:
        db.execute("SELECT id FROM outbox WHERE id = %s FOR UPDATE NOWAIT", (id,))
    except psycopg.errors.LockNotAvailable:
        return True
    return False


def test_a_claim_walks_the_due_entries_by_their_index_rather_than_sorting_them_all(store, postgres_url):
    store.put_registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    store.add_callbacks([ReceivedCallback(f"key-{n}", ACCOUNT, SERVICE, f"r-{n}", "{}", NOW - 2_000 + n) for n in range(2_000)])

    def scans_of_the_due_index():
        with psycopg.connect(postgres_url, autocommit=True) as db:
            return db.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'outbox_listener_due'").fetchone()[0]

    before = scans_of_the_due_index()
    assert len(store.claim_due("w", NOW, 30, 10)) == 10
    with store._connection() as db:  # the claim's connection, the last one given back: its statistics sent now
        db.execute("SELECT pg_stat_force_next_flush()")

    # A new table has no statistics yet: left to itself the planner sorts every due entry on every claim.
    assert scans_of_the_due_index() > before


def test_callbacks_waiting_for_a_listener_not_registered_are_not_read_by_the_claims_nor_the_idle_look(store, postgres_url):
    store.put_registration(ACCOUNT, SERVICE, URL, "listener", "s3cret")
    store.add_callbacks([ReceivedCallback(f"key-{n}", "nobody", SERVICE, f"r-{n}", "{}", NOW - 2_000 + n) for n in range(2_000)])
    add(store, "listened")
    with store._write() as db:  # as autovacuum would: the planner knows one account holds nearly every entry
        db.execute("ANALYZE outbox")

    def rows_of_the_outbox_read():
        with store._connection() as db:  # the last one given back: its statistics sent now
            db.execute("SELECT pg_stat_force_next_flush()")
        with psycopg.connect(postgres_url, autocommit=True) as db:
            return db.execute("SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_user_tables WHERE relname = 'outbox'").fetchone()[0]

    before = rows_of_the_outbox_read()
    assert [d.request_id for d in store.claim_due("w", NOW, 30, 10)] == ["request-listened"]
    assert store.next_due_at() == NOW + 30
    # A few: the listener's entry, looked up again by its id. Not the 2,000 of nobody's.
    assert rows_of_the_outbox_read() - before < 20
