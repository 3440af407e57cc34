"""Request-level authentication: each layer, rotation, proxies, the hook, warnings, and logs.

Every test here runs with the log captured at DEBUG, and the autouse fixture fails the test if
any secret it used shows up in the log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import typing as t
import warnings
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from yalgaar_receiver import (
    AuthenticationError,
    ConfigurationError,
    Receiver,
    YalgaarSecurityWarning,
    create_blueprint,
    signals,
)
from yalgaar_receiver.flask.auth import RequestAuth, RequestView, client_address

PAYLOADS = Path(__file__).parents[1] / "payloads"
BODY = (PAYLOADS / "security-presence.json").read_bytes()

CLIENT_KEY = "ck-0123456789abcdef"
TOKEN = "tok-Ajd83kd9SkQ0pXzv"
OLD_TOKEN = "tok-old-9dK2mQ7wLp"
WRONG_TOKEN = "tok-wrong-Zq81nB"
PASSWORD = "pw-s3cr3t-Vb71Lq"
OLD_PASSWORD = "pw-old-Hq02Xc"
WRONG_PASSWORD = "pw-wrong-Mn44Tz"
SECRETS = (CLIENT_KEY, TOKEN, OLD_TOKEN, WRONG_TOKEN, PASSWORD, OLD_PASSWORD, WRONG_PASSWORD)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> t.Iterator[None]:
    """Capture every log record at DEBUG and fail when one holds a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    # caplog keeps each phase apart; the call phase is where the requests were made.
    records = caplog.get_records("setup") + caplog.get_records("call")
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(r) + repr(r.args) for r in records)
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"secrets in the log: {leaked}"


def make_app(**auth: t.Any) -> Flask:
    receiver = Receiver([CLIENT_KEY])
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(receiver, **auth), url_prefix="/yalgaar")
    return app


def basic(username: str, password: str) -> dict[str, str]:
    value = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


@contextlib.contextmanager
def refusals() -> t.Iterator[list[AuthenticationError]]:
    """Record the errors sent on ``envelope_rejected``."""
    errors: list[AuthenticationError] = []

    def record(sender: object, error: Exception) -> None:
        assert isinstance(error, AuthenticationError)
        errors.append(error)

    with signals.envelope_rejected.connected_to(record):
        yield errors


@pytest.fixture
def token_client() -> FlaskClient:
    return make_app(url_tokens=[TOKEN, OLD_TOKEN]).test_client()


# -- URL tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKEN, OLD_TOKEN])
def test_token_in_path_or_query_is_accepted_and_rotates(
    token_client: FlaskClient, token: str
) -> None:
    assert token_client.post(f"/yalgaar/{token}/presence", data=BODY).status_code == 200
    assert token_client.post(f"/yalgaar/presence?token={token}", data=BODY).status_code == 200
    assert token_client.post(f"/yalgaar/{token}/", data=BODY).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/yalgaar/presence",
        f"/yalgaar/{WRONG_TOKEN}/presence",
        f"/yalgaar/presence?token={WRONG_TOKEN}",
        # A right token does not excuse a wrong one beside it.
        f"/yalgaar/{TOKEN}/presence?token={WRONG_TOKEN}",
        f"/yalgaar/presence?token={TOKEN}&token={WRONG_TOKEN}",
    ],
)
def test_missing_or_wrong_token_is_refused(token_client: FlaskClient, url: str) -> None:
    response = token_client.post(url, data=BODY)
    assert response.status_code == 403
    assert response.get_json()["detail"] == "The request is not authenticated."


def test_probe_needs_the_token_too(token_client: FlaskClient) -> None:
    assert token_client.get("/yalgaar/presence").status_code == 403
    assert token_client.get(f"/yalgaar/{TOKEN}/presence").status_code == 200


def test_token_segment_without_configured_tokens_is_not_found() -> None:
    app = make_app(allow_client_key_only=True)
    assert app.test_client().post(f"/yalgaar/{TOKEN}/presence", data=BODY).status_code == 404


# -- Basic credentials --------------------------------------------------------------------


@pytest.mark.parametrize("password", [PASSWORD, OLD_PASSWORD])
def test_basic_credentials_rotate(password: str) -> None:
    client = make_app(basic_auth=[f"yalgaar:{PASSWORD}", ("yalgaar", OLD_PASSWORD)]).test_client()
    response = client.post("/yalgaar/presence", data=BODY, headers=basic("yalgaar", password))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("yalgaar", WRONG_PASSWORD),
        basic("someone", PASSWORD),
        {"Authorization": f"Bearer {PASSWORD}"},
    ],
)
def test_wrong_or_missing_basic_credentials_are_refused(headers: dict[str, str]) -> None:
    client = make_app(basic_auth=[f"yalgaar:{PASSWORD}"]).test_client()
    assert client.post("/yalgaar/presence", data=BODY, headers=headers).status_code == 403


# -- networks and proxies -----------------------------------------------------------------


def test_network_allow_list_uses_the_socket_address_by_default() -> None:
    client = make_app(allowed_networks=["203.0.113.0/24", "2001:db8::/32"]).test_client()
    inside = {"REMOTE_ADDR": "203.0.113.7"}
    outside = {"REMOTE_ADDR": "198.51.100.1"}
    forged = {"X-Forwarded-For": "203.0.113.7"}
    assert client.post("/yalgaar/presence", data=BODY, environ_base=inside).status_code == 200
    assert client.post("/yalgaar/presence", data=BODY, environ_base=outside).status_code == 403
    # X-Forwarded-For is anyone's to write, so it is ignored unless proxies are declared.
    response = client.post("/yalgaar/presence", data=BODY, environ_base=outside, headers=forged)
    assert response.status_code == 403
    v6 = {"REMOTE_ADDR": "2001:db8::5"}
    assert client.post("/yalgaar/presence", data=BODY, environ_base=v6).status_code == 200


def test_trusted_proxies_count_from_the_socket_side() -> None:
    client = make_app(allowed_networks=["203.0.113.0/24"], trusted_proxies=1).test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def post(forwarded: str | None) -> int:
        headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
        return client.post(
            "/yalgaar/presence", data=BODY, environ_base=proxy, headers=headers
        ).status_code

    assert post("203.0.113.7") == 200
    # The client claims an allowed address; the proxy appended the real one, which decides.
    assert post("203.0.113.7, 198.51.100.1") == 403
    assert post("198.51.100.1, 203.0.113.7") == 200
    # No header: the request did not come through the proxy.
    assert post(None) == 403


def test_proxy_fix_and_trusted_proxies_agree() -> None:
    for trusted in (0, 1):
        app = make_app(allowed_networks=["203.0.113.0/24"], trusted_proxies=trusted)
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
        response = app.test_client().post(
            "/yalgaar/presence",
            data=BODY,
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"},
        )
        assert response.status_code == 200, trusted


def test_client_address() -> None:
    assert client_address("10.0.0.2", "1.1.1.1", 0) == "10.0.0.2"
    assert client_address("10.0.0.2", "1.1.1.1, 2.2.2.2", 1) == "2.2.2.2"
    assert client_address("10.0.0.2", "1.1.1.1, 2.2.2.2", 2) == "1.1.1.1"
    assert client_address("10.0.0.2", "2.2.2.2", 2) is None
    assert client_address("10.0.0.2", None, 1) is None


def test_ipv4_mapped_addresses_match_ipv4_ranges() -> None:
    auth = RequestAuth(allowed_networks="203.0.113.0/24")
    view = RequestView(method="POST", path="/", remote_addr="::ffff:203.0.113.9")
    assert auth.check(view) is None
    bad = RequestView(method="POST", path="/", remote_addr="not an address")
    assert auth.check(bad) == "network"


# -- the hook -----------------------------------------------------------------------------


def test_hook_sees_the_request_and_decides() -> None:
    seen: list[RequestView] = []

    def hook(view: RequestView) -> bool:
        seen.append(view)
        return view.headers.get("x-yalgaar-signature") == "good"

    client = make_app(authenticate=hook).test_client()
    good = client.post("/yalgaar/presence?x=1", data=BODY, headers={"X-Yalgaar-Signature": "good"})
    bad = client.post("/yalgaar/presence", data=BODY, headers={"X-Yalgaar-Signature": "bad"})
    assert (good.status_code, bad.status_code) == (200, 403)
    assert seen[0].method == "POST"
    assert seen[0].path == "/yalgaar/presence"
    assert seen[0].query == {"x": ("1",)}
    assert seen[0].remote_addr == "127.0.0.1"
    assert seen[0].body == BODY


def test_hook_can_check_a_signature_over_the_body() -> None:
    secret = PASSWORD.encode()

    def signed(view: RequestView) -> bool:
        expected = hmac.new(secret, view.body or b"", hashlib.sha256).hexdigest()
        return hmac.compare_digest(view.headers.get("x-signature", ""), expected)

    client = make_app(authenticate=signed).test_client()
    good = hmac.new(secret, BODY, hashlib.sha256).hexdigest()
    forged = BODY.replace(b"user-1", b"user-9")
    assert client.post("/yalgaar/", data=BODY, headers={"X-Signature": good}).status_code == 200
    assert client.post("/yalgaar/", data=forged, headers={"X-Signature": good}).status_code == 403


def test_hook_never_sees_an_oversized_body() -> None:
    calls: list[RequestView] = []

    def hook(view: RequestView) -> bool:
        calls.append(view)
        return True

    app = Flask(__name__)
    receiver = Receiver([CLIENT_KEY])
    blueprint = create_blueprint(receiver, authenticate=hook, max_body_bytes=100)
    app.register_blueprint(blueprint, url_prefix="/yalgaar")
    assert app.test_client().post("/yalgaar/", data=BODY).status_code == 413
    assert calls == []


def test_hook_runs_only_after_the_other_layers_passed() -> None:
    calls: list[RequestView] = []

    def hook(view: RequestView) -> bool:
        calls.append(view)
        return True

    client = make_app(url_tokens=[TOKEN], authenticate=hook).test_client()
    assert client.post("/yalgaar/presence", data=BODY).status_code == 403
    assert calls == []
    assert client.post(f"/yalgaar/{TOKEN}/presence", data=BODY).status_code == 200
    assert len(calls) == 1


def test_hook_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    def raises(view: RequestView) -> bool:
        raise RuntimeError("database down")

    async def coroutine(view: RequestView) -> bool:
        return True

    def truthy(view: RequestView) -> t.Any:
        return "yes"

    for hook in (raises, coroutine, truthy):
        client = make_app(authenticate=hook).test_client()
        assert client.post("/yalgaar/presence", data=BODY).status_code == 403, hook
    assert "database down" in caplog.text
    assert "returned a coroutine" in caplog.text


# -- what a refusal looks like ------------------------------------------------------------


def test_every_layer_answers_the_same_and_the_log_says_which(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(
        url_tokens=[TOKEN],
        basic_auth=[f"yalgaar:{PASSWORD}"],
        allowed_networks=["127.0.0.0/8"],
        authenticate=lambda view: view.headers.get("x-ok") == "1",
    )
    client = app.test_client()
    good = {**basic("yalgaar", PASSWORD), "X-Ok": "1"}
    attempts = {
        "url_token": (f"/yalgaar/{WRONG_TOKEN}/presence", good, "127.0.0.1"),
        "basic_auth": (f"/yalgaar/{TOKEN}/presence", basic("yalgaar", WRONG_PASSWORD), None),
        "network": (f"/yalgaar/{TOKEN}/presence", good, "198.51.100.1"),
        "authenticate": (f"/yalgaar/{TOKEN}/presence", basic("yalgaar", PASSWORD), None),
    }
    bodies = []
    with refusals() as errors:
        for layer, (url, headers, address) in attempts.items():
            environ = {"REMOTE_ADDR": address or "127.0.0.1"}
            if layer == "authenticate":
                headers = {**headers, "X-Ok": "0"}
            response = client.post(url, data=BODY, headers=headers, environ_base=environ)
            assert response.status_code == 403, layer
            bodies.append(response.get_data())
            assert f"failed the {layer} check" in caplog.text
    assert len(set(bodies)) == 1
    assert [e.layer for e in errors] == list(attempts)
    assert client.post(f"/yalgaar/{TOKEN}/presence", data=BODY, headers=good).status_code == 200


def test_client_key_is_still_checked_behind_the_layers() -> None:
    app = make_app(url_tokens=[TOKEN])
    body = BODY.replace(CLIENT_KEY.encode(), b"ck-forged")
    with refusals() as errors:
        response = app.test_client().post(f"/yalgaar/{TOKEN}/presence", data=body)
    assert response.status_code == 403
    assert response.get_json()["detail"] == "The request is not authenticated."
    assert [e.layer for e in errors] == ["client_key"]


# -- configuration ------------------------------------------------------------------------


def test_settings_come_from_the_config_and_arguments_win() -> None:
    app = Flask(__name__)
    app.config.update(
        YALGAAR_URL_TOKENS=f"{TOKEN}, {OLD_TOKEN}",
        YALGAAR_BASIC_AUTH=f"yalgaar:{PASSWORD}",
        YALGAAR_ALLOWED_NETWORKS="127.0.0.0/8",
        YALGAAR_TRUSTED_PROXIES="0",
    )
    receiver = Receiver([CLIENT_KEY])
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    app.register_blueprint(
        create_blueprint(receiver, "other", url_tokens=[WRONG_TOKEN]), url_prefix="/other"
    )
    client = app.test_client()
    auth = basic("yalgaar", PASSWORD)
    assert client.post(f"/yalgaar/{OLD_TOKEN}/presence", data=BODY, headers=auth).status_code == (
        200
    )
    assert client.post(f"/yalgaar/{OLD_TOKEN}/presence", data=BODY).status_code == 403
    assert client.post(f"/other/{TOKEN}/presence", data=BODY, headers=auth).status_code == 403
    assert client.post(f"/other/{WRONG_TOKEN}/", data=BODY, headers=auth).status_code == 200


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"url_tokens": ["a/b"]}, "'/'"),
        ({"url_tokens": ["  "]}, "empty"),
        ({"basic_auth": ["no-colon"]}, "username:password"),
        ({"basic_auth": [":password"]}, "username"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "CIDR"),
        ({"trusted_proxies": -1}, "whole number"),
        ({"allow_client_key_only": "maybe"}, "True or False"),
        ({"authenticate": "not callable"}, "callable"),
    ],
)
def test_bad_settings_are_refused_at_registration(options: dict[str, t.Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        make_app(**options)


def test_bad_basic_credential_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RequestAuth(basic_auth=[PASSWORD])
    assert PASSWORD not in str(caught.value)


def test_repr_holds_no_secret() -> None:
    auth = RequestAuth(url_tokens=[TOKEN], basic_auth=[f"u:{PASSWORD}"])
    view = RequestView(
        method="POST",
        path=f"/yalgaar/{TOKEN}/presence",
        remote_addr="127.0.0.1",
        query={"token": (TOKEN,)},
        headers={"authorization": PASSWORD},
        basic_auth=("u", PASSWORD),
        url_token=TOKEN,
    )
    for text in (repr(auth), repr(view)):
        assert not [s for s in SECRETS if s in text]


# -- start-up warnings --------------------------------------------------------------------


def test_client_key_alone_warns_and_names_the_fix() -> None:
    with pytest.warns(YalgaarSecurityWarning, match="YALGAAR_URL_TOKENS") as caught:
        make_app()
    assert "clientKey alone" in str(caught[0].message)
    # The warning points at the application's register_blueprint call.
    assert caught[0].filename == __file__
    assert "YALGAAR_ALLOW_CLIENT_KEY_ONLY" in str(caught[0].message)


@pytest.mark.parametrize(
    "options",
    [
        {"url_tokens": [TOKEN]},
        {"basic_auth": [f"u:{PASSWORD}"]},
        {"allowed_networks": ["10.0.0.0/8"]},
        {"authenticate": lambda view: True},
        {"allow_client_key_only": True},
    ],
)
def test_another_layer_or_the_acknowledgement_silences_the_warning(
    options: dict[str, t.Any],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_app(**options)


def test_acknowledgement_from_the_config() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.register_blueprint(create_blueprint(Receiver([CLIENT_KEY])))


def test_unauthenticated_warns_louder(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    receiver = Receiver(allow_unauthenticated=True)
    with pytest.warns(YalgaarSecurityWarning, match="ACCEPTS WEBHOOKS FROM ANYONE"):
        app.register_blueprint(create_blueprint(receiver, allow_client_key_only=True))
    assert "ACCEPTS WEBHOOKS FROM ANYONE" in caplog.text
    # With a real layer the endpoint is protected, key or no key.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Flask(__name__).register_blueprint(create_blueprint(receiver, url_tokens=[TOKEN]))


def test_an_empty_setting_means_none() -> None:
    # An environment variable that is set but empty configures nothing, not an empty token.
    app = Flask(__name__)
    app.config.update(YALGAAR_URL_TOKENS=" ", YALGAAR_ALLOW_CLIENT_KEY_ONLY=True)
    app.register_blueprint(create_blueprint(Receiver([CLIENT_KEY])), url_prefix="/yalgaar")
    assert app.test_client().post("/yalgaar/presence", data=BODY).status_code == 200


def test_a_number_from_the_environment_is_refused_clearly() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_URL_TOKENS"] = 123  # what from_prefixed_env makes of "123"
    with pytest.raises(ConfigurationError, match="comma-separated string, not int 123"):
        app.register_blueprint(create_blueprint(Receiver([CLIENT_KEY])))
