"""Schemathesis over the API's own OpenAPI schema, against the real data plane: no request, however
malformed, makes a server error, and every refused one leaves the desired state, the data plane and
the state file as they were. Requests carry the token, so they get past authentication to validation."""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_TOKEN, map_rows
from xdplb.api.context import ApiContext
from xdplb.api.main import create_app
from xdplb.model import Service
from xdplb.store import Store

pytestmark = pytest.mark.api

SEED = Service.model_validate({"protocol": "tcp", "vip": "10.100.0.100", "port": 80, "ring_size": 4099,
                               "backends": [{"address": "10.100.1.11"}, {"address": "10.100.1.12"}]})
# the configuration maps (the Maglev rows are covered by dp.services: a plan is written whole or not at all)
EXAMPLES = 60  # per operation
CONFIG_MAPS = ("services", "service_conf", "backends", "seqs", "settings", "tx_ports")


def _fingerprint(manager) -> tuple:
    maps = {name: hashlib.sha256(repr(map_rows(manager.dp.maps[name])).encode()).hexdigest() for name in CONFIG_MAPS}
    return manager.state, manager.dp.services, Store(manager.store.dir).load(), maps


def test_no_request_makes_a_server_error_and_refused_ones_change_nothing(manager):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(ApiContext(manager, API_TOKEN)))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        _fuzz(operation, manager)


def _fuzz(operation, manager) -> None:
    @given(case=operation.as_strategy(), known=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def one(case, known: bool) -> None:
        if SEED.key not in {s.key for s in manager.state.services}:
            manager.add_service(SEED)  # a PUT of the whole configuration took it away
        if known and case.path_parameters:  # half of the cases name what exists, to get past the 404
            case.path_parameters["service_id"] = SEED.id
            if "address" in case.path_parameters:
                case.path_parameters["address"] = str(SEED.backends[0].address)
        if case.path in ("/v1/capture", "/v1/events"):  # streams for as long as asked: keep them short
            case.query = {**(case.query or {}), "seconds": 0.05}
        before = _fingerprint(manager)
        response = case.call(headers={"Authorization": f"Bearer {API_TOKEN}"})
        where = f"{case.method} {case.formatted_path} {case.query or ''} {str(case.body)[:200]}"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
        if response.status_code >= 400:
            assert _fingerprint(manager) == before, f"{where}: refused ({response.status_code}) but changed the state"
            assert response.json()["errors"], response.text

    one()

