"""Spyne's forced full garbage collection is off: no request pays for a gc.collect() pause."""

import gc

from werkzeug.test import Client

from gateway import config
from gateway.app import Gateway
from tests import envelopes


def test_a_request_does_not_force_a_full_collection(tmp_path):
    gateway = Gateway(config.load(environ={"M2MGW_STORE_PATH": str(tmp_path / "store.sqlite3")}))
    full_collections = []

    def watch(phase, info):
        if phase == "start" and info["generation"] == 2:
            full_collections.append(info)

    gc.callbacks.append(watch)
    try:
        for _ in range(3):  # a client fault: Spyne's whole request cycle, no upstream call
            answer = Client(gateway).post(
                "/api/v2/StateService.svc",
                data=envelopes.go_to_state({}),
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            assert answer.status_code == 500 and b"s:Client" in answer.data
    finally:
        gc.callbacks.remove(watch)
        gateway.close(timeout=5)
    assert full_collections == []
