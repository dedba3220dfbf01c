"""The JSON API against hostile and racing callers: always a 4xx with a JSON problem, never a 5xx
(but a busy database's 503); the status of each refusal is the one of errors.CODES; and the OpenAPI
document states exactly the constraints the server enforces.
"""
from __future__ import annotations

import json
import re
import threading
import uuid

import pytest
import requests

from conftest import serving, wait_until, write_lock_held
from ddns import errors

ZONE = "dyn.example.test"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A served instance (bcrypt cost 8: a new secret takes long enough for a delete to overtake it)."""
    from conftest import REQUIRED_TOOLS, Instance, free_port, require
    from ddns import cli

    require(*REQUIRED_TOOLS)
    directory = tmp_path_factory.mktemp("api") / "inst"
    ports = free_port(), free_port(), free_port()
    cli.init_instance(directory, *ports, extra={"security.bcrypt_rounds": 8, "bind.verify_timeout": 3.0,
                                                "zones.git_fsync": False, "portal.max_secret_actions": 100_000,
                                                "dyndns2.allow_loopback": True})
    inst = Instance(directory, directory / "ddns.toml", *ports)
    inst.add_user("alice")
    with serving(inst) as running:
        token = running.service.accounts.new_api_token(running.service.store.user("alice"), "t")
        yield Api(running, {"Authorization": f"Bearer {token}"})


class Api:
    def __init__(self, running, auth: dict):
        self.running, self.auth = running, auth
        self.base = running.url + "/api/v1"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.base + path, headers={**self.auth, **kw.pop("headers", {})},
                                timeout=60, **kw)

    def create(self, name: str, **fields) -> requests.Response:
        return self.call("POST", "/hosts", json={"name": name, "domain": ZONE, **fields})


def assert_problem(r: requests.Response, *statuses: int) -> None:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_two_concurrent_deletes_of_one_host(api):
    for trial in range(5):
        name = f"twice{trial}"
        assert api.create(name).status_code == 201
        barrier = threading.Barrier(2)
        results: list[requests.Response] = []

        def delete() -> None:
            barrier.wait(10)
            results.append(api.call("DELETE", f"/hosts/{name}.{ZONE}"))

        threads = [threading.Thread(target=delete) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r.status_code for r in results) == [204, 404], [(r.status_code, r.text) for r in results]
        assert_problem(next(r for r in results if r.status_code == 404), 404)
        assert api.call("GET", f"/hosts/{name}.{ZONE}").status_code == 404


def test_new_secrets_racing_a_delete(api):
    for trial in range(3):
        fqdn = f"regen{trial}.{ZONE}"
        assert api.create(fqdn.split(".")[0]).status_code == 201
        stop = threading.Event()
        answers: list[requests.Response] = []

        def regenerate() -> None:
            for _ in range(500):
                r = api.call("POST", f"/hosts/{fqdn}/secret")
                answers.append(r)
                if stop.is_set() and r.status_code == 404:
                    return

        threads = [threading.Thread(target=regenerate) for _ in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: any(r.status_code == 200 for r in list(answers)), 60, what="a first new secret")
        deleted = api.call("DELETE", f"/hosts/{fqdn}")
        stop.set()
        for t in threads:
            t.join(120)
        assert deleted.status_code == 204, deleted.text
        assert {r.status_code for r in answers} <= {200, 404}, [(r.status_code, r.text) for r in answers
                                                                if r.status_code not in (200, 404)]
        for r in answers:
            if r.status_code == 404:
                assert_problem(r, 404)


@pytest.mark.parametrize("body", [
    b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b', "domain": "dyn.example.test"}',
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a": ' * 6000 + b"1" + b"}" * 6000,
], ids=["nested-array-in-field", "nested-array", "nested-object"])
def test_deeply_nested_json_is_400(api, body):
    r = api.call("POST", "/hosts", data=body, headers={"Content-Type": "application/json"})
    assert_problem(r, 400)
    assert "nested" in r.json()["error"]


@pytest.mark.parametrize("field, value", [("comment", "\\ud800"), ("domain", "dyn.example.test\\udc00"),
                                          ("name", "a\\udfffb"), ("comment", "ok \\ud83d")])
def test_lone_surrogates_are_400(api, field, value):
    fields = {"name": "surrogate", "domain": ZONE, "comment": ""}
    body = "{" + ", ".join(f'"{k}": "{value if k == field else v}"' for k, v in fields.items()) + "}"
    r = api.call("POST", "/hosts", data=body.encode(), headers={"Content-Type": "application/json"})
    assert_problem(r, 400)
    assert "Unicode" in r.json()["error"]
    assert api.call("GET", f"/hosts/surrogate.{ZONE}").status_code == 404


def test_a_taken_name_is_409(api):
    assert api.create("taken").status_code == 201
    assert_problem(api.create("taken"), 409)


def test_each_refusal_answers_the_status_of_the_table_and_changes_nothing(instance):
    instance.add_user("alice")
    with serving(instance, {"portal.max_secret_actions": 5}) as running:
        service = running.service
        service.add_domain("team.example.test")
        service.set_domain_access("team.example.test", False, ["staff"])  # alice is not in "staff"
        token = service.accounts.new_api_token(service.store.user("alice"), "t")
        api = Api(running, {"Authorization": f"Bearer {token}"})
        assert api.create("taken").status_code == 201  # a new secret: 1 of 5 (a valid body counts, refused or not)

        def refused(kind: errors.Kind, r: requests.Response, message: str) -> None:
            assert_problem(r, errors.CODES[kind].http)
            assert message in r.json()["error"], r.json()

        refused(errors.Kind.INVALID, api.create("a_b"), "does not match")
        refused(errors.Kind.INVALID, api.call("POST", "/hosts", data=b"[1]"), "JSON object")
        refused(errors.Kind.NOT_FOUND, api.call("GET", f"/hosts/nope.{ZONE}"), f"no host nope.{ZONE}")
        refused(errors.Kind.NOT_FOUND, api.call("POST", "/hosts", json={"name": "x", "domain": "nope.example"}),
                "no domain nope.example")  # 2 of 5
        refused(errors.Kind.REFUSED, api.call("POST", "/hosts", json={"name": "x", "domain": "team.example.test"}),
                "may not register hosts in team.example.test")  # 3 of 5
        refused(errors.Kind.CONFLICT, api.create("taken"), f"taken.{ZONE} is taken")  # 4 of 5
        with write_lock_held(running.instance.config.path("store.path")):
            refused(errors.Kind.BUSY, api.create("locked"), "database is busy")  # 5 of 5
        refused(errors.Kind.TOO_MANY, api.create("more"), "too many new secrets")
        assert [h["fqdn"] for h in api.call("GET", "/hosts").json()] == [f"taken.{ZONE}"]


def body_schema(api) -> dict:
    spec = requests.get(api.base + "/openapi.json", timeout=30).json()
    return spec["paths"]["/hosts"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_the_document_lists_the_errors_each_call_can_answer(api):
    spec = requests.get(api.base + "/openapi.json", timeout=30).json()
    paths = spec["paths"]
    for path, item in paths.items():
        for method, op in item.items():
            if method != "parameters":
                assert {"401", "429"} <= set(op["responses"]), (path, method)
    assert {"400", "403", "404", "409"} <= set(paths["/hosts"]["post"]["responses"])
    assert {"404", "503"} <= set(paths["/hosts/{fqdn}"]["delete"]["responses"])
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_length_limits_of_the_document_are_what_the_server_enforces(api):
    schema = body_schema(api)
    assert set(schema["required"]) == {"name", "domain"}
    limits = {k: v["maxLength"] for k, v in schema["properties"].items()}
    assert set(limits) == {"name", "domain", "comment"}
    # at the limit: accepted
    at = api.create("n" * limits["name"], comment="c" * limits["comment"])
    assert at.status_code == 201, at.text
    assert at.json()["comment"] == "c" * limits["comment"]
    # one over: refused with 400, nothing made
    over = {"name": "n" * (limits["name"] + 1), "domain": "d" * (limits["domain"] + 1), "comment": "c" * (limits["comment"] + 1)}
    for field, value in over.items():
        r = api.call("POST", "/hosts", json={"name": "over", "domain": ZONE, field: value})
        assert_problem(r, 400)
        assert str(limits[field]) in r.json()["error"], r.text
    assert api.call("GET", f"/hosts/over.{ZONE}").status_code == 404


@pytest.mark.parametrize("field, value", [
    ("name", "ok-name"), ("name", "a_b"), ("name", "-lead"), ("name", "trail-"), ("name", "dot.ted"), ("name", "sp ace"),
    ("name", "Caps9"), ("name", "line\n"), ("domain", ZONE), ("domain", "dyn..example.test"), ("domain", "-dyn.example.test"),
    ("domain", "dyn.example.test/x"), ("comment", "plain text, with ünïcode"), ("comment", "tab\there"),
    ("comment", "new\nline"), ("comment", "del\x7f"),
])
def test_patterns_of_the_document_are_what_the_server_enforces(api, field, value):
    pattern = body_schema(api)["properties"][field]["pattern"]
    allowed = re.fullmatch(pattern, value) is not None
    fields = {"name": "p" + uuid.uuid4().hex[:12], "domain": ZONE, "comment": "", field: value}
    r = api.call("POST", "/hosts", data=json.dumps(fields).encode(), headers={"Content-Type": "application/json"})
    if allowed:
        assert r.status_code == 201, r.text
    else:
        assert_problem(r, 400)
        assert field in r.json()["error"]
