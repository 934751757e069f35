"""The delivery worker: stored callbacks to legacy listeners, as SOAP, until acknowledged.

Each gateway process runs one. Its deliveries run on one asyncio event loop
thread, up to IN_FLIGHT at once, each over a kept-alive connection of its
own to its listener (``outbound.KeptAliveOnLoop``): a delivery takes no
thread of its own, and each thread a callback passes through costs CPU in
hand-offs of the GIL and context switches, more than any one step's Python.
The store is never called on the loop (its calls block: SQLite's busy
waits, PostgreSQL over the network). One store thread records the
outcomes the loop queued, all those queued together in one transaction
(shared with the callbacks the receiver commits meanwhile: the store's
group commit), keeps house, and claims for the loop when it has room; a
renewal thread renews the leases. Every thread, the loop's included, runs
supervised (``gateway.supervise``): no exception ends delivery.

The workers of several processes share the store: an entry is claimed
(with a lease) before it is sent, so one worker sends it at a time. A live
worker renews its leases RENEWALS_PER_LEASE times a lease; the claims of a
worker that died lapse within the lease (``[callbacks] claim_lease_s``) and
are taken again. A callback this process receives while its listener has
nothing older due is stored already claimed by this process's worker and
handed to the loop: no claim transaction for it. A worker stopped gracefully
lets the POSTs under way finish, then gives back, due at once, what it holds
but will not send (handed over and not started, or claimed and not
started), for the other processes or this one restarted; what a listener
may have acknowledged (a POST under way, an outcome not yet recorded) stays
held, as does all that a killed process held: their leases lapse. A
listener acknowledges with 2xx; anything else (an envelope that cannot be
built included) is retried with exponential back-off until
``max_attempts``, then the entry is dead (``m2m-gateway callbacks dead``
lists them, ``retry`` re-drives them).

A store that fails stops nothing, it is retried until it answers again. An
outcome the store could not record is kept and recorded first when it
answers again, and nothing is claimed meanwhile, so a callback a listener
acknowledged during an outage is not sent twice.

Delivery is at least once: a process killed after the listener answered 2xx
but before that was recorded sends the callback again after restart.
"""

import asyncio
import collections
import functools
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway import outbound
from gateway.exceptions import (
    ConnectFailed,
    DeliveryStalled,
    ExchangeFailed,
    GatewayError,
    ListenerRefused,
    ProxyUnusable,
    StoreUnavailable,
)
from gateway.metrics import CALLBACKS_DEAD, CALLBACKS_DELIVERED, CALLBACKS_RETRIED, DELIVERY_PASS_COMPLETED, WORKER_RESTARTS
from gateway.store.records import Delivery, Settlement
from gateway.supervise import supervised_thread
from gateway.translate import callback

log = logging.getLogger(__name__)

# The most entries one claim takes.
BATCH = 10
# Entries handed over by the receiver that may wait for the loop: past
# this, callbacks are stored for any process to claim.
HANDED_MAX = BATCH
# How long a receiver that finds HANDED_MAX entries waiting waits for the loop
# to take one. Stored for any worker to claim instead, its callback would wait
# behind claims, each a transaction dearer than a hand-off: a process behind
# with its deliveries fell further behind, and a burst ran on claims to its
# end. Waiting slows the poster down to what the worker delivers. A request
# thread waits at most this long; a slow listener stops the waiting at once.
HAND_OFF_WAIT_S = 0.05
# A POST under way this long means a slow listener: no more entries are
# handed over to wait behind it, they are stored for any process to claim.
SLOW_POST_S = 1.0
# Deliveries under way at once in each process: a slow listener holds one, not all.
# With 4, the loop waited for the listeners' answers most of the time (a p50
# latency of 260 ms in bench.callback_bridge); 16 keep it at work.
IN_FLIGHT = 16
# A lease ([callbacks] claim_lease_s) is renewed this many times while it
# runs; a delivery starts only while its lease was renewed within the
# last half of it, so one renewal may fail or be late without stopping it.
RENEWALS_PER_LEASE = 4
# How often a process expires and purges old entries: each is a write
# transaction, too dear for every claim.
HOUSEKEEPING_S = 60.0
# How often an idle worker looks for work other processes stored.
IDLE_POLL_S = 1.0
# The most outcomes recorded in one transaction: a long transaction holds
# the write lock from other processes for as long.
RECORDED_TOGETHER = 64
# How long outcomes wait, queued in the store's group commit, for a transaction
# of the receiver's to take them along: under load one comes within
# milliseconds, and the store thread's own transactions came between the
# receiver's, each adding its commit.
RECORD_LINGER_S = 0.005
# Listener origins whose connections are kept: the least recently used beyond are closed.
LISTENERS_KEPT = 64


@dataclass(frozen=True, eq=False)  # each attempt is itself: recorded ones are taken out by identity
class Outcome:
    """One attempt at one claimed entry: ``problem`` is None when the listener acknowledged it."""

    delivery: object
    attempt: int
    at: float
    problem: str | None
    duration_s: float  # of the POST; 0 when none was made


class DeliveryWorker:
    def __init__(self, store, settings, retain_s, policy):
        self._store = store
        self._settings = settings
        self._retain_s = retain_s
        self._policy = policy
        self._next_housekeeping = 0.0
        self._id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_s = settings.claim_lease_s
        # Outcomes recorded together, and with the callbacks received meanwhile:
        # one transaction for all of them. Waiting up to a lease: meanwhile the
        # claims stay renewed.
        self._write_outcomes = store.outbox_batch_writer(self._lease_s, "the delivery outcomes", linger_s=RECORD_LINGER_S)
        # A delivery that hangs must not hold its claim for ever: past this, it lapses.
        self._max_hold_s = settings.timeout_s * (BATCH + 1) + self._lease_s
        self._stopping = threading.Event()
        self._loop_ended = threading.Event()  # the loop's thread is done, at a stop
        self._store_done = threading.Event()  # the store thread is done, at a stop
        self._threads = []
        self._pass_completed_at = time.time()
        # The entries this worker is sending or has yet to record, and since when: the leases it renews.
        self._held = {}
        self._held_lock = threading.Lock()
        self._renewed_at = 0.0
        # Entries handed over by the receiver, not yet taken by the loop; receivers wait on
        # ``_room`` for it to take one.
        self._handed = collections.deque()
        self._room = threading.Condition()
        # What the store thread is to do: record ``_unrecorded`` (outcomes, oldest first),
        # claim up to ``_claim_limit`` for the loop (0: none asked for).
        self._store_work = threading.Condition()
        self._unrecorded = collections.deque()
        self._claim_limit = 0
        self._woken = False  # a callback was stored for any worker: claim at once
        # Entry id -> when its POST under way began.
        self._posting = {}
        # The ids of the entries the loop is delivering: never given back at stop while it runs.
        self._sending = set()
        # The loop's own, touched on its thread only (but for a claim answered while no loop
        # runs): what was claimed and not started yet (delivery, claimed at), whether a claim
        # is asked for, when to claim next unless woken.
        self._claimed = collections.deque()
        self._claiming = False
        self._claim_at = 0.0
        self._loop = None
        self._nudged = None
        self._nudge_on_its_way = False

    def start(self):
        self._threads = [
            supervised_thread("callback-delivery", self._run_loop, self._stopping),
            supervised_thread("delivery-store", self._keep_store, self._store_done),
            supervised_thread("claim-renewal", self._renew_claims, self._stopping),
        ]
        return self

    def stop(self, timeout=None):
        """Let the POSTs under way finish and their outcomes be recorded (waiting up to
        ``timeout`` in all), then give back the callbacks this worker holds unsent."""
        self._stopping.set()
        self._nudge()
        with self._room:
            self._room.notify_all()
        with self._store_work:
            self._store_work.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._give_back_unsent()

    def wake(self):
        """A callback was stored for any worker: claim now rather than at the next poll."""
        self._woken = True
        self._nudge()

    def hand_off_claim(self, now, wait_s=None):
        """(worker, until): what a callback received at ``now`` is stored claimed by,
        to be handed to this worker by ``stored``; (None, None) while a delivery is held
        by a slow listener, or enough wait still after ``wait_s`` (None: HAND_OFF_WAIT_S):
        then any worker claims it. With ``wait_s`` 0 it never waits (a receiver on an
        event loop).
        """
        if self._stopping.is_set() or self._slow_post():
            return None, None
        if wait_s is None:
            wait_s = HAND_OFF_WAIT_S
        with self._room:
            if not self._room.wait_for(lambda: len(self._handed) < HANDED_MAX or self._stopping.is_set(), wait_s):
                return None, None
        if self._stopping.is_set():
            return None, None
        return self._id, now + self._lease_s

    def behind(self):
        """Whether HANDED_MAX entries handed over wait for the loop: a callback received
        now would wait for room (see ``hand_off_claim``)."""
        return len(self._handed) >= HANDED_MAX

    def stored(self, result):
        """The receiver stored a callback: ``result`` is its Delivery if the store claimed it
        for this worker (see ``hand_off_claim``), to send; else the worker claims it.
        Thread-safe, and never waits."""
        if isinstance(result, Delivery):
            self._hold({result.id}, result.received_at)  # renewed from now on, as a claim is
            self._handed.append(result)
            self._nudge()
        else:
            self.wake()

    def check_progress(self):
        """Raise DeliveryStalled when no delivery pass completed within ``delivery_stall_s``.

        A pass completes with each delivery and each claim; an idle worker
        claims every second or so. Only every delivery under way stuck (or
        the store failing every claim, or the loop failing) stalls it.
        """
        idle_s = time.time() - self._pass_completed_at
        if idle_s > self._settings.delivery_stall_s:
            raise DeliveryStalled(f"no delivery pass completed for {idle_s:.0f} s")

    def _slow_post(self):
        since = time.monotonic() - SLOW_POST_S
        return any(started < since for started in list(self._posting.values()))

    def _pass_completed(self):
        self._pass_completed_at = time.time()
        DELIVERY_PASS_COMPLETED.set(self._pass_completed_at)

    def _nudge(self):
        """Have the loop look at what changed; from any thread, after the change. One nudge
        on its way is enough for every change made before the loop takes it: each other
        would cost a write to the loop's self-pipe and a wake-up of its thread."""
        loop = self._loop
        if loop is None or self._nudge_on_its_way:
            return  # not running: it looks when it starts
        self._nudge_on_its_way = True
        try:
            loop.call_soon_threadsafe(self._take_nudge)
        except RuntimeError:  # closed meanwhile: the next loop looks when it starts
            self._nudge_on_its_way = False

    def _take_nudge(self):
        self._nudge_on_its_way = False  # before the loop looks: a change after this nudges again
        self._nudged.set()

    # -- the loop ------------------------------------------------------------------

    def _run_loop(self):
        try:
            asyncio.run(self._deliver_until_stopped())
        finally:
            if self._stopping.is_set():
                self._loop_ended.set()
                with self._store_work:
                    self._store_work.notify()

    async def _deliver_until_stopped(self):
        """Start what was handed over or claimed while there is room, ask the store thread to
        claim while there is more; at a stop, start nothing more and let what is under way finish."""
        self._nudged = asyncio.Event()
        self._nudge_on_its_way = False  # one on its way to a loop that ended never arrives
        self._loop = asyncio.get_running_loop()
        self._claiming = False  # a claim asked of a loop that failed is answered to it no more
        listeners = _Listeners(self._listener_client)
        under_way = set()
        # One timer for the next claim's time, kept while that time stays: not one a turn.
        claim_timer, claim_timer_at = None, None

        def done(task):
            under_way.discard(task)
            self._nudged.set()

        def claim_time_came():
            nonlocal claim_timer_at
            claim_timer_at = None
            self._nudged.set()

        try:
            while not self._stopping.is_set():
                self._nudged.clear()
                for delivery, claimed_at in self._startable(IN_FLIGHT - len(under_way)):
                    task = asyncio.create_task(self._deliver(delivery, listeners))
                    under_way.add(task)
                    task.add_done_callback(done)
                claim_at = self._ask_to_claim(IN_FLIGHT - len(under_way))
                if claim_at != claim_timer_at:
                    if claim_timer is not None:
                        claim_timer.cancel()
                    claim_timer, claim_timer_at = None, claim_at
                    if claim_at is not None:
                        claim_timer = self._loop.call_later(claim_at - time.time(), claim_time_came)
                await self._nudged.wait()
            if under_way:
                await asyncio.wait(under_way)
        finally:
            self._loop = None
            listeners.close()

    def _startable(self, room):
        """Up to ``room`` entries to deliver now, (delivery, claimed at): claimed first, the older."""
        started = 0
        while started < room:
            if self._claimed:
                delivery, claimed_at = self._claimed.popleft()
            elif self._handed:
                delivery = self._handed.popleft()
                claimed_at = delivery.received_at
                with self._room:
                    self._room.notify()
            else:
                return
            # Unrenewed past half the lease, another worker may soon own the entry: never send it then.
            if time.time() - max(claimed_at, self._renewed_at) > self._lease_s / 2:
                self._release({delivery.id})  # its claim lapses and it is taken again
                continue
            self._sending.add(delivery.id)
            if self._stopping.is_set():  # after the add: stop() gives back what is not in _sending
                self._sending.discard(delivery.id)
                return
            started += 1
            yield delivery, claimed_at

    def _ask_to_claim(self, room):
        """Ask the store thread for a claim if there is room and it is time; when to look
        again unless nudged before (None: when nudged)."""
        room -= len(self._claimed)
        if self._claiming or room <= 0:
            return None  # the claim's answer, or a delivery done, nudges
        if not self._woken and time.time() < self._claim_at:
            return self._claim_at
        self._woken, self._claiming = False, True
        with self._store_work:
            self._claim_limit = min(room, BATCH)
            self._store_work.notify()
        return None

    def _take_claimed(self, deliveries, claimed_at, claim_at):
        """On the loop: the store thread's answer to its claim."""
        self._claiming = False
        self._claimed.extend((delivery, claimed_at) for delivery in deliveries)
        self._claim_at = claim_at
        self._pass_completed()
        self._nudged.set()

    async def _deliver(self, delivery, listeners):
        """Attempt ``delivery`` and queue its outcome. An exception of the gateway's own
        (there is no other way out) ends the attempt, not the loop: the entry's claim is
        left to lapse, and it is taken again."""
        try:
            await self._attempt(delivery, listeners)
        except Exception:  # noqa: BLE001 - supervised here, as the threads are
            WORKER_RESTARTS.labels("callback-delivery").inc()
            log.exception("callback %d requestId=%s: its delivery failed unexpectedly; taken again once its lease lapses",
                          delivery.id, delivery.request_id)
            self._release({delivery.id})
            self._sending.discard(delivery.id)

    async def _attempt(self, delivery, listeners):
        attempt, duration_s = delivery.attempts + 1, 0.0
        try:
            await self._check_listener(delivery.url)
            envelope = callback.to_envelope(
                json.loads(delivery.body),
                username=delivery.username,
                password=delivery.password,
                callback_count=attempt,
                max_callback_threshold=self._settings.max_attempts,
                kind_spellings=json.loads(delivery.kind_spellings) if delivery.kind_spellings else None,
            )
        except ListenerRefused as error:
            problem = f"listener URL refused: {error}"
        except Exception as error:  # noqa: BLE001 - a poison entry fails alone, never the others
            problem = f"no envelope could be built: {type(error).__name__}: {error}"
            # The attempt's line says what; a traceback only where the gateway itself failed.
            if not isinstance(error, GatewayError):
                log.exception("callback %d requestId=%s: no envelope could be built", delivery.id, delivery.request_id)
        else:
            started = self._posting[delivery.id] = time.monotonic()
            try:
                problem = await self._post(listeners, delivery.url, envelope)
            finally:
                del self._posting[delivery.id]
            duration_s = time.monotonic() - started
        with self._store_work:
            self._unrecorded.append(Outcome(delivery, attempt, time.time(), problem, duration_s))
            self._store_work.notify()
        self._sending.discard(delivery.id)  # after the append: never neither sending nor unrecorded
        if problem is not None:
            self._claim_at = 0.0  # its retry is due some time: the next claim says when
        self._pass_completed()

    async def _check_listener(self, url):
        """The listener policy's check; a host name resolved off the loop, where it may wait for DNS."""
        if _names_an_address(urlsplit(url).hostname or ""):
            self._policy.check(url)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._policy.check, url)

    async def _post(self, listeners, url, envelope):
        """None when the listener acknowledged; otherwise what went wrong.

        No redirect is followed: it could lead anywhere, past the listener
        policy, so it is an answer like any non-2xx.
        """
        target = urlsplit(url)
        try:
            answer = await listeners.client(f"{target.scheme}://{target.netloc}").request(
                "POST",
                target._replace(scheme="", netloc="").geturl() or "/",
                envelope,
                {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            )
        except ConnectFailed as error:
            if error.tls_problem:  # the usual cause: a listener on a private CA, not in [callbacks] ca_bundle
                return f"TLS with the listener failed: {error.tls_problem}"
            return f"listener unreachable ({'ConnectTimeout' if error.timed_out else 'ConnectionError'})"
        except ExchangeFailed as error:
            return f"listener unreachable ({'ReadTimeout' if error.timed_out else 'ConnectionError'})"
        except (ProxyUnusable, OSError, ValueError) as error:
            # A proxy the gateway cannot use, a client certificate OpenSSL cannot load, a URL no request can carry.
            return f"listener unreachable ({type(error).__name__}: {error})"
        if 200 <= answer.status < 300:
            return None
        return f"listener answered HTTP {answer.status}"

    def _listener_client(self, origin):
        settings = self._settings
        return outbound.KeptAliveOnLoop(
            origin,
            settings.timeout_s,
            ca_bundle=settings.ca_bundle,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
        )

    # -- the store thread ----------------------------------------------------------

    def _keep_store(self):
        """Record what waits to be recorded, keep house, then claim if the loop asked: after a
        failure to record, nothing is claimed until the outcomes are recorded. Once the loop
        has ended at a stop, one last try at what it left, then this thread is done."""
        ended = self._loop_ended.is_set()
        if not ended:
            stopping = self._stopping.is_set()  # no more claims nor housekeeping: outcomes, and the loop's end
            with self._store_work:
                self._store_work.wait_for(
                    lambda: self._unrecorded or self._loop_ended.is_set() or (self._claim_limit and not stopping),
                    None if stopping else max(0.0, self._next_housekeeping - time.time()),
                )
        try:
            self._record_unrecorded()
            if self._stopping.is_set():
                return
            self._housekeeping(time.time())
            if self._claim_limit:
                self._claim(self._claim_limit)
        finally:
            if ended:
                self._store_done.set()  # what failed to be recorded is left to lapse, as a killed process's is

    def _claim(self, limit):
        now = time.time()
        deliveries = self._store.claim_due(self._id, now, self._lease_s, limit)
        self._hold({delivery.id for delivery in deliveries}, now)
        # Nothing due: the next claim when the next entry comes due, unless a stored callback wakes it first.
        claim_at = 0.0 if deliveries else time.time() + self._idle_wait()
        self._claim_limit = 0  # answered: only now, so a claim that failed is tried again
        loop = self._loop
        try:
            loop.call_soon_threadsafe(self._take_claimed, deliveries, now, claim_at)
        except (AttributeError, RuntimeError):  # no loop now: the next one starts them, or the stop gives them back
            self._claimed.extend((delivery, now) for delivery in deliveries)

    def _record_unrecorded(self):
        """Record the outcomes queued, oldest first, RECORDED_TOGETHER to a transaction; if the
        store fails, what it did not record stays queued, recorded first when it answers again."""
        while self._unrecorded:
            outcomes = list(itertools.islice(self._unrecorded, RECORDED_TOGETHER))
            results = self._write_outcomes([self._settlement(outcome) for outcome in outcomes])
            failure = None
            for outcome, result in zip(outcomes, results, strict=True):
                if isinstance(result, Exception):
                    failure = failure or result
                    continue
                self._unrecorded.remove(outcome)
                self._release({outcome.delivery.id})
                self._log_settled(outcome, result)
            if failure is not None:
                raise failure

    def _settlement(self, outcome):
        delivery = outcome.delivery
        return Settlement(
            delivery.id, self._id, outcome.at, outcome.problem, self._retry_at(outcome), delivery.url, outcome.duration_s
        )

    def _retry_at(self, outcome):
        if outcome.problem is None or outcome.attempt >= self._settings.max_attempts:
            return None
        return outcome.at + self._settings.backoff_s * 2 ** (outcome.attempt - 1)

    def _log_settled(self, outcome, recorded):
        delivery, attempt = outcome.delivery, outcome.attempt
        if not recorded:
            log.warning(
                "callback %d requestId=%s: attempt %d not recorded, another worker took the entry over",
                delivery.id,
                delivery.request_id,
                attempt,
            )
            return
        if outcome.problem is None:
            CALLBACKS_DELIVERED.inc()
            log.info("callback %d requestId=%s delivered (attempt %d)", delivery.id, delivery.request_id, attempt)
            return
        retried = self._retry_at(outcome) is not None
        (CALLBACKS_RETRIED if retried else CALLBACKS_DEAD).inc()
        log.warning(
            "callback %d requestId=%s attempt %d/%d failed: %s%s",
            delivery.id,
            delivery.request_id,
            attempt,
            self._settings.max_attempts,
            outcome.problem,
            "" if retried else "; dead-lettered",
        )

    def _housekeeping(self, now):
        """Dead-letter what waited too long for a listener; forget what is older than the retention."""
        if now < self._next_housekeeping:
            return
        expired = self._store.expire_waiting(now, self._settings.expire_after_s)
        purged = self._store.purge_delivered_before(now - self._retain_s)
        self._store.forget_requests_before(now - self._retain_s)
        self._next_housekeeping = now + HOUSEKEEPING_S
        if expired or purged:
            log.info("housekeeping: %d callbacks expired waiting for a listener, %d delivered ones purged", expired, purged)

    def _idle_wait(self):
        next_due = self._store.next_due_at()
        if next_due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.0, next_due - time.time()))

    # -- leases --------------------------------------------------------------------

    def _renew_claims(self):
        started = time.time()
        with self._held_lock:
            held = [id for id, since in self._held.items() if started - since < self._max_hold_s]
        if held:
            self._store.renew_claims(self._id, held, started + self._lease_s)
            self._renewed_at = started
        self._stopping.wait(self._lease_s / RENEWALS_PER_LEASE)

    def _give_back_unsent(self):
        """Release this worker's claims on what it holds and will not send, for any worker to
        take now rather than once the lease lapses: the entries handed over or claimed that
        the loop did not start. Never an entry whose outcome is unrecorded (its listener may
        have acknowledged it: it waits, held, to be recorded or lapse), nor one whose POST is
        under way (it outlived the stop's wait). A store that fails leaves them to lapse, as
        a killed process's do.
        """
        with self._held_lock:
            unsent = set(self._held)
        unsent -= set(self._sending)
        unsent -= {outcome.delivery.id for outcome in list(self._unrecorded)}
        if not unsent:
            return
        try:
            given_back = self._store.release_claims(self._id, unsent, time.time())
        except StoreUnavailable as error:
            log.warning(
                "%d callbacks held unsent not given back at stop, taken again once their lease lapses: %s", len(unsent), error
            )
            return
        log.info("%d callbacks held unsent given back at stop, for any instance to deliver now", given_back)

    def _hold(self, ids, since):
        with self._held_lock:
            self._held.update(dict.fromkeys(ids, since))

    def _release(self, ids):
        with self._held_lock:
            for id in ids:
                self._held.pop(id, None)


@functools.lru_cache(maxsize=LISTENERS_KEPT)
def _names_an_address(host):
    """Whether ``host`` is an IP address, which resolves without asking DNS."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Listeners:
    """One client per listener origin, made on first use, for one loop: the least recently
    used past LISTENERS_KEPT closed (its connections with it)."""

    def __init__(self, make):
        self._make = make
        self._clients = collections.OrderedDict()

    def client(self, origin):
        client = self._clients.get(origin)
        if client is None:
            client = self._clients[origin] = self._make(origin)
            if len(self._clients) > LISTENERS_KEPT:
                self._clients.popitem(last=False)[1].close()
        else:
            self._clients.move_to_end(origin)
        return client

    def close(self):
        for client in self._clients.values():
            client.close()
        self._clients.clear()
