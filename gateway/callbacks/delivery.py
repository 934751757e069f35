"""The delivery worker: stored callbacks to legacy listeners, as SOAP, until acknowledged.

Each gateway process runs one, with a few sending threads. The workers of
several processes share the store: an entry is claimed (with a lease) before
it is sent, so one worker sends it at a time. A live worker renews its leases
four times a lease; the claims of a worker that died lapse within the lease
(``[callbacks] claim_lease_s``) and are taken again. A callback this process
receives while its listener has nothing older due is stored already claimed
by this process's worker and handed to a sender: no claim transaction for it.
A worker stopped gracefully gives back, due at once, what it holds but will
not send (handed over and not taken, or left of a claimed batch), for the
other processes or this one restarted; what a listener may have acknowledged
(a POST under way, an outcome not yet recorded) stays held, as does all that
a killed process held: their leases lapse. A listener acknowledges with 2xx;
anything else (an envelope that cannot be built included) is retried with
exponential back-off until ``max_attempts``, then the entry is dead
(``m2m-gateway callbacks dead`` lists them, ``retry`` re-drives them).

Every loop runs supervised (``gateway.supervise``): a store that fails stops
nothing, it is retried until it answers again. An outcome the store could not
record is kept here and recorded first when it answers again, so a callback a
listener acknowledged during an outage is not sent twice.

Delivery is at least once: a process killed after the listener answered 2xx
but before that was recorded sends the callback again after restart.
"""

import collections
import functools
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
from gateway.metrics import CALLBACKS_DEAD, CALLBACKS_DELIVERED, CALLBACKS_RETRIED, DELIVERY_PASS_COMPLETED
from gateway.store.records import Delivery, Settlement
from gateway.supervise import supervised_thread
from gateway.translate import callback

log = logging.getLogger(__name__)

BATCH = 10
# Entries handed over by the receiver that may wait for a sender: past
# this, callbacks are stored for any process to claim.
HANDED_MAX = BATCH
# How long a receiver that finds HANDED_MAX entries waiting waits for a sender
# to take one. Stored for any worker to claim instead, its callback would wait
# behind claims, each a transaction dearer than a hand-off: a process behind
# with its deliveries fell further behind, and a burst ran on claims to its
# end. Waiting slows the poster down to what the senders deliver. A request
# thread waits at most this long; a slow listener stops the waiting at once.
HAND_OFF_WAIT_S = 0.05
# A POST under way this long means a slow listener: no more entries are
# handed over to wait behind it, they are stored for any process to claim.
SLOW_POST_S = 1.0
# Threads sending at once in each process: a slow listener holds one, not all.
SENDERS = 4
# A lease ([callbacks] claim_lease_s) is renewed this many times while it
# runs; a sender starts a POST only while its lease was renewed within the
# last half of it, so one renewal may fail or be late without stopping it.
RENEWALS_PER_LEASE = 4
# How often a process expires and purges old entries: each is a write
# transaction, too dear for every pass of the delivery loop.
HOUSEKEEPING_S = 60.0
# How often an idle worker looks for work other processes stored.
IDLE_POLL_S = 1.0


@dataclass(frozen=True)
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
        self._housekeeping_lock = threading.Lock()
        self._next_housekeeping = 0.0
        self._id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wakeups = _Wakeups(SENDERS)
        self._stopping = threading.Event()
        # One client per listener origin, a connection per sending thread kept alive between deliveries.
        self._listener = functools.lru_cache(maxsize=64)(self._listener_client)
        # Outcomes the store could not record yet, oldest first: recorded before anything is claimed.
        self._unrecorded = collections.deque()
        self._recording = threading.Lock()
        # The senders' outcomes recorded together, and with the callbacks received
        # meanwhile: one transaction for all of them. Waiting up to a lease:
        # meanwhile the claims stay renewed.
        self._lease_s = settings.claim_lease_s
        self._write_outcome = store.outbox_writer(self._lease_s, "the delivery outcome")
        # The entries this worker is sending or has yet to record, and since when: the leases it renews.
        self._held = {}
        # A sender that hangs must not hold its claims for ever: past this, they lapse.
        self._max_hold_s = settings.timeout_s * (BATCH + 1) + self._lease_s
        self._held_lock = threading.Lock()
        self._renewed_at = 0.0
        self._pass_completed_at = time.time()
        self._threads = []
        self._sender = _SenderState()
        # Sender thread -> when its POST under way began.
        self._posting = {}
        # Sender thread -> the ids of the entries it is sending: never given back at stop while it runs.
        self._sending = {}

    def start(self):
        self._threads = [
            supervised_thread(f"callback-delivery-{n}", self._pass, self._stopping) for n in range(SENDERS)
        ]
        self._threads.append(supervised_thread("claim-renewal", self._renew_claims, self._stopping))
        return self

    def stop(self, timeout=None):
        """Stop the senders, letting each finish the POST under way (waiting up to ``timeout``
        for each thread), then give back the callbacks this worker holds unsent."""
        self._stopping.set()
        self._wakeups.close()
        for thread in self._threads:
            thread.join(timeout)
        self._give_back_unsent()

    def wake(self):
        """A callback was stored: one sender looks now rather than at the next poll."""
        self._wakeups.wake()

    def hand_off_claim(self, now):
        """(worker, until): what a callback received at ``now`` is stored claimed by,
        to be handed to this worker by ``stored``; (None, None) while a sender is held
        by a slow listener, or enough wait still after HAND_OFF_WAIT_S: then any worker
        claims it.
        """
        if self._stopping.is_set() or self._slow_post() or not self._wakeups.room(HANDED_MAX, HAND_OFF_WAIT_S):
            return None, None
        return self._id, now + self._lease_s

    def _slow_post(self):
        since = time.monotonic() - SLOW_POST_S
        return any(started < since for started in list(self._posting.values()))

    def stored(self, result):
        """The receiver stored a callback: ``result`` is its Delivery if the store claimed it
        for this worker (see ``hand_off_claim``), to send; else a sender looks for it."""
        if isinstance(result, Delivery):
            self._hold({result.id}, result.received_at)  # renewed from now on, as a claim is
            self._wakeups.hand(result)
        else:
            self._wakeups.wake()

    def check_progress(self):
        """Raise DeliveryStalled when no delivery pass completed within ``delivery_stall_s``.

        An idle worker completes a pass every second or so; only every sending
        thread stuck (or the store failing every pass) stalls it.
        """
        idle_s = time.time() - self._pass_completed_at
        if idle_s > self._settings.delivery_stall_s:
            raise DeliveryStalled(f"no delivery pass completed for {idle_s:.0f} s")

    # -- the loops -----------------------------------------------------------------

    def _pass(self):
        """Record what waits to be recorded, keep house; send what the receiver handed over,
        or, once woken for a stored callback or at the time the last claim said, claim and send what is due."""
        self._record_unrecorded()
        now = time.time()
        self._housekeeping(now)
        handed = self._wakeups.take()
        if handed is not None:  # claimed as it was stored
            outcomes = self._send([handed], handed.received_at)
            if any(outcome.problem is not None for outcome in outcomes):
                self._sender.claim_at = 0.0  # its retry is due some time: the next claim says when
        elif now >= self._sender.claim_at or self._wakeups.wait(self._sender.claim_at - now):
            self._claim_and_send(time.time())  # after the wait: what was stored meanwhile is due too
        self._pass_completed_at = time.time()
        DELIVERY_PASS_COMPLETED.set(self._pass_completed_at)

    def _claim_and_send(self, now):
        deliveries = self._store.claim_due(self._id, now, self._lease_s, BATCH)
        self._send(deliveries, now)
        if len(deliveries) == BATCH:
            self._wakeups.wake()  # there may be more: another sender looks too
        # Nothing due: the next claim when the next entry comes due, unless a stored callback wakes it first.
        self._sender.claim_at = 0.0 if deliveries else time.time() + self._idle_wait()

    def _send(self, deliveries, claimed_at):
        """Send ``deliveries``, claimed at ``claimed_at``, while their lease holds; their outcomes."""
        claimed = {delivery.id for delivery in deliveries}
        self._hold(claimed, claimed_at)
        self._sending[threading.get_ident()] = claimed
        outcomes, unsent = [], set()
        try:
            for n, delivery in enumerate(deliveries):
                if self._stopping.is_set():
                    unsent = {left.id for left in deliveries[n:]}  # held still: stop() gives them back
                    break
                # Unrenewed past half the lease, another worker may soon own the entry: never send it then.
                if time.time() - max(claimed_at, self._renewed_at) > self._lease_s / 2:
                    break  # the remaining claims lapse and are taken again
                outcomes.append(self._deliver(delivery))
        finally:
            del self._sending[threading.get_ident()]
            # Left unsent (or recorded): no longer renewed. What waits to be recorded stays held.
            self._release(claimed - unsent - self._unrecorded_ids())
        return outcomes

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
        take now rather than once the lease lapses: the entries handed over that no sender
        took, and those a sender stopped before. Never an entry whose outcome is unrecorded
        (its listener may have acknowledged it: it waits, held, to be recorded or lapse), nor
        the entries of a sender still running (its POST under way outlived the join).
        A store that fails leaves them to lapse, as a killed process's do.
        """
        with self._held_lock:
            unsent = set(self._held)
        unsent -= self._unrecorded_ids()
        for sending in list(self._sending.values()):
            unsent -= sending
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

    def _unrecorded_ids(self):
        return {outcome.delivery.id for outcome in list(self._unrecorded)}

    def _hold(self, ids, since):
        with self._held_lock:
            self._held.update(dict.fromkeys(ids, since))

    def _release(self, ids):
        with self._held_lock:
            for id in ids:
                self._held.pop(id, None)

    def _housekeeping(self, now):
        """Dead-letter what waited too long for a listener; forget what is older than the retention."""
        if now < self._next_housekeeping or not self._housekeeping_lock.acquire(blocking=False):
            return
        try:
            expired = self._store.expire_waiting(now, self._settings.expire_after_s)
            purged = self._store.purge_delivered_before(now - self._retain_s)
            self._store.forget_requests_before(now - self._retain_s)
            self._next_housekeeping = now + HOUSEKEEPING_S
            if expired or purged:
                log.info("housekeeping: %d callbacks expired waiting for a listener, %d delivered ones purged", expired, purged)
        finally:
            self._housekeeping_lock.release()

    def _idle_wait(self):
        next_due = self._store.next_due_at()
        if next_due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.0, next_due - time.time()))

    # -- one entry -----------------------------------------------------------------

    def _deliver(self, delivery):
        attempt, duration_s = delivery.attempts + 1, 0.0
        try:
            self._policy.check(delivery.url)
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
        except Exception as error:  # noqa: BLE001 - a poison entry fails alone, never its batch
            problem = f"no envelope could be built: {type(error).__name__}: {error}"
            # The attempt's line says what; a traceback only where the gateway itself failed.
            if not isinstance(error, GatewayError):
                log.exception("callback %d requestId=%s: no envelope could be built", delivery.id, delivery.request_id)
        else:
            started = self._posting[threading.get_ident()] = time.monotonic()
            try:
                problem = self._post(delivery.url, envelope)
            finally:
                del self._posting[threading.get_ident()]
            duration_s = time.monotonic() - started
        outcome = Outcome(delivery, attempt, time.time(), problem, duration_s)
        self._record(outcome)
        return outcome

    def _record(self, outcome):
        """Record ``outcome`` in the store; if the store fails, keep it to record first when it is back."""
        try:
            self._settle(outcome)
        except StoreUnavailable:
            self._unrecorded.append(outcome)
            raise

    def _record_unrecorded(self):
        # One thread at a time, to the end: no thread claims anew while an
        # outcome of an entry this worker sent is still unrecorded.
        with self._recording:
            while self._unrecorded:
                outcome = self._unrecorded[0]
                self._settle(outcome)
                self._unrecorded.popleft()
                self._release({outcome.delivery.id})

    def _settle(self, outcome):
        delivery, attempt, settings = outcome.delivery, outcome.attempt, self._settings
        at, problem = outcome.at, outcome.problem
        retry_at = None
        if problem is not None and attempt < settings.max_attempts:
            retry_at = at + settings.backoff_s * 2 ** (attempt - 1)
        if not self._write_outcome(Settlement(delivery.id, self._id, at, problem, retry_at, delivery.url, outcome.duration_s)):
            return self._lost(outcome)
        if problem is None:
            CALLBACKS_DELIVERED.inc()
            log.info("callback %d requestId=%s delivered (attempt %d)", delivery.id, delivery.request_id, attempt)
            return
        (CALLBACKS_RETRIED if retry_at else CALLBACKS_DEAD).inc()
        log.warning(
            "callback %d requestId=%s attempt %d/%d failed: %s%s",
            delivery.id,
            delivery.request_id,
            attempt,
            settings.max_attempts,
            problem,
            "" if retry_at else "; dead-lettered",
        )

    @staticmethod
    def _lost(outcome):
        log.warning(
            "callback %d requestId=%s: attempt %d not recorded, another worker took the entry over",
            outcome.delivery.id,
            outcome.delivery.request_id,
            outcome.attempt,
        )

    def _post(self, url, envelope):
        """None when the listener acknowledged; otherwise what went wrong.

        No redirect is followed: it could lead anywhere, past the listener
        policy, so it is an answer like any non-2xx.
        """
        target = urlsplit(url)
        try:
            answer = self._listener(f"{target.scheme}://{target.netloc}").request(
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
            # A proxy the gateway cannot use, a client certificate OpenSSL cannot load, a URL http.client refuses.
            return f"listener unreachable ({type(error).__name__}: {error})"
        if 200 <= answer.status < 300:
            return None
        return f"listener answered HTTP {answer.status}"

    def _listener_client(self, origin):
        settings = self._settings
        return outbound.KeptAlive(
            origin,
            settings.timeout_s,
            ca_bundle=settings.ca_bundle,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
        )


class _SenderState(threading.local):
    """Each sender's own: when it next claims, unless woken (see ``DeliveryWorker._pass``)."""

    claim_at = 0.0  # at once, until its first claim says otherwise


class _Wakeups:
    """What the senders wait for: entries handed over to send, and wakes to claim; and what
    receivers wait for: room among the entries handed over (``room``).

    A wake is one stored callback to claim: it wakes one idle sender, not
    every one (an Event did), each to run a claim transaction (and take the
    store's write lock) for the one entry. A wake while no sender waits is
    kept for the next one to wait, up to ``limit`` of them, so none is missed
    between a claim that found nothing and the wait. After ``close()`` no
    sender or receiver waits any more.
    """

    def __init__(self, limit):
        self._limit = limit
        self._kept = 0
        self._handed = collections.deque()
        self._closed = False
        lock = threading.Lock()
        self._condition = threading.Condition(lock)
        self._taken = threading.Condition(lock)  # an entry handed over was taken: room for another
        self.waiting = 0  # senders idle in wait() now

    @property
    def handed(self):
        """Entries handed over that no sender has taken yet."""
        return len(self._handed)

    def hand(self, delivery):
        with self._condition:
            self._handed.append(delivery)
            self._condition.notify()

    def take(self):
        """The oldest entry handed over, one at a time: the next is for whichever sender is free
        first, not behind this one's listener; None when none waits."""
        with self._condition:
            if not self._handed:
                return None
            self._taken.notify()
            return self._handed.popleft()

    def room(self, limit, timeout):
        """Whether fewer than ``limit`` entries handed over wait, waiting up to ``timeout``
        for a sender to take one; False after ``close()``."""
        with self._condition:
            return self._taken.wait_for(lambda: len(self._handed) < limit or self._closed, timeout) and not self._closed

    def wake(self):
        with self._condition:
            if self._kept < self._limit:
                self._kept += 1
                self._condition.notify()

    def wait(self, timeout):
        """Wait up to ``timeout`` for a wake or an entry handed over: whether to claim now
        (woken, or the time is up), not when an entry was handed over or after ``close()``."""
        with self._condition:
            notified = True
            if not self._kept and not self._handed and not self._closed:
                self.waiting += 1
                try:
                    notified = self._condition.wait(timeout)
                finally:
                    self.waiting -= 1
            if self._closed or self._handed:
                return False
            if self._kept:
                self._kept -= 1
                return True
            return not notified  # notified for what another sender took first: not the time yet

    def close(self):
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            self._taken.notify_all()
