"""The story of one GoToState for ``m2m-gateway trace``, told from what the store keeps.

Pure: it takes the store's records (``ForwardedRequest``, ``StoredCallback``)
and returns a JSON-ready document, or the document as a readable timeline.
Nothing secret is in either: the store keeps neither ThingSpace's callback
credentials nor the listener URL's user info, and the listener's Username
and Password are not part of a callback's record.
"""

import json

from gateway.logs import iso_utc
from gateway.store.records import DEAD, DELIVERED, PENDING
from gateway.translate import callback

# The states of a callback as an operator sees them: pending entries without
# a registered listener are waiting for one; claimed ones are pending too.
WAITING = "waiting"


def story(request_id, forwarded, callbacks):
    """The trace of ``request_id``, or None when the store knows nothing of it.

    ``forwarded`` is the store's ``ForwardedRequest`` (None if not
    remembered), ``callbacks`` its ``StoredCallback`` list.
    """
    if forwarded is None and not callbacks:
        return None
    return {
        "request_id": request_id,
        "forwarded_at": iso_utc(forwarded.forwarded_at) if forwarded else None,
        "account": forwarded.account if forwarded else None,
        "devices": forwarded.devices if forwarded else None,
        "kind_spellings": forwarded.kind_spellings if forwarded else {},
        "callbacks": [_callback(stored) for stored in callbacks],
    }


def _callback(stored):
    body = json.loads(stored.body)
    device = body["deviceIds"][0]
    status, fault = callback.legacy_status(body)
    state = _state(stored)
    return {
        "id": stored.id,
        "device": device["id"],
        "device_kind": device["kind"],
        "status": status,
        "reason": ": ".join(fault) if fault else None,
        "received_at": iso_utc(stored.received_at),
        "account": stored.account,
        "service": stored.service,
        "state": state,
        "next_retry_at": iso_utc(stored.next_attempt_at) if state == PENDING and stored.state == PENDING else None,
        "last_error": stored.last_error,
        "attempts": [
            {
                "number": attempt.number,
                "at": iso_utc(attempt.at),
                "url": attempt.url,
                "outcome": attempt.outcome,
                "ok": attempt.ok,
                "duration_s": None if attempt.duration_s is None else round(attempt.duration_s, 3),
            }
            for attempt in stored.attempts
        ],
    }


def _state(stored):
    if stored.state in (DELIVERED, DEAD):
        return stored.state
    return PENDING if stored.listener_registered else WAITING


def timeline(document):
    """``story``'s document as lines for a person: the forwarding, then each callback and its attempts."""
    lines = [f"request {document['request_id']}"]
    if document["forwarded_at"]:
        devices = document["devices"]
        what = [f"{devices} device{'' if devices == 1 else 's'}" if devices is not None else "devices by filter"]
        if document["account"]:
            what.append(f"account {document['account']}")
        if document["kind_spellings"]:
            what.append("kinds spelled " + ", ".join(sorted(document["kind_spellings"].values())))
        lines.append(f"  {document['forwarded_at']}  forwarded to ThingSpace: {', '.join(what)}")
    else:
        lines.append("  forwarding not known to this store (before its retention, or by an older gateway)")
    if not document["callbacks"]:
        lines.append("  no callback received yet")
    for entry in document["callbacks"]:
        lines += _callback_lines(entry)
    return "\n".join(lines)


def _callback_lines(entry):
    status = f"{entry['status']} ({entry['reason']})" if entry["reason"] else entry["status"]
    state = entry["state"]
    if state == WAITING:
        state = f"waiting for a listener for {entry['account']} {entry['service']}"
    elif entry["next_retry_at"]:
        state = f"pending, next attempt {entry['next_retry_at']}"
    elif state == PENDING:
        state = "pending, being delivered"
    lines = [
        f"  callback {entry['id']}: device {entry['device_kind']} {entry['device']}, {status}; {state}",
        f"    {entry['received_at']}  received from ThingSpace for {entry['account']} {entry['service']}",
    ]
    for attempt in entry["attempts"]:
        took = f" ({attempt['duration_s'] * 1000:.0f} ms)" if attempt["duration_s"] is not None else ""
        to = f" to {attempt['url']}" if attempt["url"] else ""
        lines.append(f"    {attempt['at']}  attempt {attempt['number']}{to}: {attempt['outcome']}{took}")
    attempts = entry["attempts"]
    if entry["state"] == DELIVERED and not attempts:
        lines.append("    (its attempts were made before the gateway kept them)")
    if entry["state"] == DEAD and entry["last_error"] != (attempts[-1]["outcome"] if attempts else None):
        lines.append(f"    given up: {entry['last_error']}")  # e.g. no listener registered in time
    return lines
