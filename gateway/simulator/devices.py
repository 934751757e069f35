"""The simulated network: which devices a goToState reaches, and what each reports.

What ThingSpace would look up (an MDN, an IP address, the devices a filter
matches) is derived from the request by hashing, so the same request always
yields the same answer, which demos and tests rely on.
"""

import hashlib
import json
from dataclasses import dataclass

DEVICES_PER_FILTER = 2
# The document's callback example: what ThingSpace reports for an eUICC device.
EUICC_SMSR_OID = "1.3.6.1.4.1.31746.1.500.200.101.5"
EUICC_SUBSCRIPTION_TYPE = ("GPX", "Garage Swap with Pre-Paid External Subscriber")


@dataclass(frozen=True)
class Device:
    ids: list  # [{kind, id}] as the request named the device
    ip_address: str | None = None


@dataclass(frozen=True)
class DeviceOutcome:
    """One device's result: the body of its callback, less the delivery fields."""

    first_id: dict  # {kind, id}: the device as its callback names it
    status: str  # "Success" or "Failed"
    go_to_state_response: dict


def _hash(seed):
    return int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")


def simulated_mdn(device_id):
    number = _hash(f"mdn:{device_id}")
    # A North American number never starts with 0 or 1.
    return f"{2 + number % 8}{number // 8 % 10**9:09d}"


def simulated_ip_address(device_id):
    number = _hash(f"ip:{device_id}")
    return f"10.{number % 256}.{number >> 8 & 255}.{1 + (number >> 16) % 254}"


def _filtered_devices(device_filter, account_name):
    seed = f"{account_name}:{json.dumps(device_filter, sort_keys=True)}"
    return [
        Device([{"kind": "imei", "id": f"{_hash(f'imei:{seed}:{index}') % 10**15:015d}"}])
        for index in range(DEVICES_PER_FILTER)
    ]


def requested_devices(order, account_name):
    """The devices a validated goToState ``order`` reaches in ``account_name``."""
    if "devices" in order:
        return [Device(device["deviceIds"], device.get("ipAddress")) for device in order["devices"]]
    return _filtered_devices(order["filter"], account_name)


def device_outcome(device, order, account_name, failure):
    """What ThingSpace reports for ``device``; ``failure`` (or None) makes it fail."""
    first_id = device.ids[0]
    kinds = {device_id["kind"] for device_id in device.ids}
    reported_ids = list(device.ids)
    if "mdn" not in kinds:
        reported_ids.append({"kind": "mdn", "id": simulated_mdn(first_id["id"])})
    euicc = "eid" in kinds
    subscription_code, subscription_desc = EUICC_SUBSCRIPTION_TYPE if euicc else ("", "")
    return DeviceOutcome(
        first_id=first_id,
        status="Failed" if failure else "Success",
        go_to_state_response={
            "deviceIds": reported_ids,
            "ipAddress": device.ip_address or simulated_ip_address(first_id["id"]),
            "servicePlan": order["servicePlan"],
            "accountName": account_name,
            "serviceName": order["serviceName"],
            "stateName": order["stateName"],
            "smsrOid": EUICC_SMSR_OID if euicc else "",
            "subscriptionTypeCode": subscription_code,
            "subscriptionTypeDesc": subscription_desc,
            "stageStateChangeReasonCode": failure.reason_code if failure else "",
            "stageStateChangeReasonDesc": failure.reason_desc if failure else "",
        },
    )
