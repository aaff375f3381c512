"""How the worker and the CLI's Kafka clients log in: SASL and TLS from the environment, validated at load.

=====================================  =====================================================
``RATEHOUND_KAFKA_SECURITY_PROTOCOL``  ``PLAINTEXT`` (default), ``SASL_PLAINTEXT``,
                                       ``SASL_SSL`` or ``SSL``
``RATEHOUND_KAFKA_SASL_MECHANISM``     ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``
                                       (required with ``SASL_*``: no guessed default)
``RATEHOUND_KAFKA_SASL_USERNAME``      required with ``SASL_*``
``RATEHOUND_KAFKA_SASL_PASSWORD``      or ``..._PASSWORD_FILE`` (a mounted secret; one
                                       trailing newline is dropped), exactly one of them
``RATEHOUND_KAFKA_SSL_CAFILE``         PEM bundle that signed the brokers' certificates
                                       (system CAs when unset)
``RATEHOUND_KAFKA_SSL_CERTFILE``       client certificate (PEM) for mutual TLS, with
``RATEHOUND_KAFKA_SSL_KEYFILE``        its key, if the key is not in the certificate file
``RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME`` ``true`` (default) or ``false``
=====================================  =====================================================

A variable that the chosen protocol would ignore is an error rather than a silent
no-op: a username set with ``PLAINTEXT`` almost always means the protocol was
forgotten, and the worker would otherwise connect unauthenticated.

One :class:`KafkaSecurity` feeds both client families: :meth:`~KafkaSecurity.faust_credentials`
for the worker (Faust hands it to aiokafka) and :meth:`~KafkaSecurity.kafka_client_config`
for kafka-python (``simulate``, topic creation, tests). Both get the same TLS context.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class KafkaSecurityError(ValueError):
    """A Kafka security setting that cannot work; the message names the variable and the value."""


class KafkaLoginError(RuntimeError):
    """The broker did not let these credentials in (or could not be reached to try)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The protocol, SASL login and TLS files for Kafka clients; invalid combinations raise at construction.

    >>> KafkaSecurity().kafka_client_config()
    {'security_protocol': 'PLAINTEXT'}
    >>> s = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "detector", "pw")
    >>> s, sorted(s.kafka_client_config())
    (KafkaSecurity(protocol='SASL_PLAINTEXT', sasl_mechanism='SCRAM-SHA-512', sasl_username='detector', ssl_cafile=None, ssl_certfile=None, ssl_keyfile=None, ssl_check_hostname=True), ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol'])
    >>> KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512")
    Traceback (most recent call last):
    ...
    stream.security.KafkaSecurityError: RATEHOUND_KAFKA_SASL_USERNAME: required when RATEHOUND_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        p = self.protocol
        if p not in PROTOCOLS:
            raise KafkaSecurityError(f"RATEHOUND_KAFKA_SECURITY_PROTOCOL: must be one of {', '.join(PROTOCOLS)}, "
                                     f"got {p!r}")
        sasl = {"RATEHOUND_KAFKA_SASL_MECHANISM": self.sasl_mechanism,
                "RATEHOUND_KAFKA_SASL_USERNAME": self.sasl_username,
                "RATEHOUND_KAFKA_SASL_PASSWORD": self.sasl_password}
        tls = {"RATEHOUND_KAFKA_SSL_CAFILE": self.ssl_cafile, "RATEHOUND_KAFKA_SSL_CERTFILE": self.ssl_certfile,
               "RATEHOUND_KAFKA_SSL_KEYFILE": self.ssl_keyfile}
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SASL_MECHANISM: must be one of {', '.join(MECHANISMS)} "
                                         f"when RATEHOUND_KAFKA_SECURITY_PROTOCOL is {p}, got {self.sasl_mechanism!r}")
            if not self.sasl_username:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SASL_USERNAME: required when "
                                         f"RATEHOUND_KAFKA_SECURITY_PROTOCOL is {p}")
            if not self.sasl_password:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SASL_PASSWORD (or RATEHOUND_KAFKA_SASL_PASSWORD_FILE): "
                                         f"required when RATEHOUND_KAFKA_SECURITY_PROTOCOL is {p}")
        elif ignored := [name for name, value in sasl.items() if value]:
            raise KafkaSecurityError(f"{ignored[0]}: set, but RATEHOUND_KAFKA_SECURITY_PROTOCOL is {p}, which does "
                                     f"not log in; use SASL_PLAINTEXT or SASL_SSL, or unset it")
        if self.uses_tls:
            for name, path in tls.items():
                if path is not None and not os.access(path, os.R_OK):
                    raise KafkaSecurityError(f"{name}: no readable file at {path!r}")
            if self.ssl_keyfile and not self.ssl_certfile:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SSL_KEYFILE: set without RATEHOUND_KAFKA_SSL_CERTFILE, "
                                         f"got {self.ssl_keyfile!r}")
            self.ssl_context()  # a bad PEM fails here, at load, not at the first connection
        elif ignored := [name for name, value in tls.items() if value]:
            raise KafkaSecurityError(f"{ignored[0]}: set, but RATEHOUND_KAFKA_SECURITY_PROTOCOL is {p}, which does "
                                     f"not use TLS; use SSL or SASL_SSL, or unset it")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        """Read the ``RATEHOUND_KAFKA_*`` variables (``os.environ`` unless ``env`` is given)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        # not stripped: a password may begin or end with a space
        password = env.get("RATEHOUND_KAFKA_SASL_PASSWORD") or None
        password_file = get("RATEHOUND_KAFKA_SASL_PASSWORD_FILE")
        if password is not None and password_file is not None:
            raise KafkaSecurityError("RATEHOUND_KAFKA_SASL_PASSWORD and RATEHOUND_KAFKA_SASL_PASSWORD_FILE: "
                                     "set both; keep one")
        if password_file is not None:
            try:
                with open(password_file, encoding="utf-8") as f:
                    # secrets written with `echo` end in a newline that is not part of the password
                    password = f.read().removesuffix("\n").removesuffix("\r") or None
            except OSError as exc:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SASL_PASSWORD_FILE: cannot read {password_file!r}: "
                                         f"{exc.strerror}") from None
            if password is None:
                raise KafkaSecurityError(f"RATEHOUND_KAFKA_SASL_PASSWORD_FILE: {password_file!r} is empty")
        check = (get("RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME") or "true").lower()
        if check not in _TRUE + _FALSE:
            raise KafkaSecurityError(f"RATEHOUND_KAFKA_SSL_CHECK_HOSTNAME: must be true or false, got {check!r}")
        mechanism = get("RATEHOUND_KAFKA_SASL_MECHANISM")
        return cls(protocol=(get("RATEHOUND_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
                   sasl_mechanism=mechanism.upper() if mechanism else None,
                   sasl_username=get("RATEHOUND_KAFKA_SASL_USERNAME"), sasl_password=password,
                   ssl_cafile=get("RATEHOUND_KAFKA_SSL_CAFILE"), ssl_certfile=get("RATEHOUND_KAFKA_SSL_CERTFILE"),
                   ssl_keyfile=get("RATEHOUND_KAFKA_SSL_KEYFILE"), ssl_check_hostname=check in _TRUE)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (verifying the broker), or None without TLS."""
        if not self.uses_tls:
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        except (ssl.SSLError, ValueError) as exc:
            raise KafkaSecurityError(f"RATEHOUND_KAFKA_SSL_CAFILE/_CERTFILE/_KEYFILE: not usable PEM "
                                     f"({self.ssl_cafile!r}, {self.ssl_certfile!r}, {self.ssl_keyfile!r}): {exc}") from None
        ctx.check_hostname = self.ssl_check_hostname
        return ctx

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for ``faust.App``: None, ``SSLCredentials`` or ``SASLCredentials``.

        Faust turns ``SASLCredentials(mechanism="SCRAM-SHA-512")`` into aiokafka's
        ``sasl_mechanism``; aiokafka 0.14 implements PLAIN and both SCRAMs itself.
        """
        if self.protocol == "PLAINTEXT":
            return None
        import faust

        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                     mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())

    def kafka_client_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        if self.uses_tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def describe(self) -> str:
        """For logs and errors: the protocol and who logs in, never the password.

        >>> KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "detector", "pw").describe()
        "SASL_SSL, SCRAM-SHA-256 as 'detector'"
        """
        return f"{self.protocol}, {self.sasl_mechanism} as {self.sasl_username!r}" if self.uses_sasl else self.protocol


def check_kafka_login(bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Log in to the cluster once; raise :class:`KafkaLoginError` saying who was refused where, and why it may be.

    kafka-python and aiokafka both report a refused SASL login as a bootstrap timeout
    (or a ``KeyError: 'v'`` from the SCRAM exchange) and retry; call this first to
    fail at once with a message a person can act on.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise KafkaLoginError(f"kafka at {first}: unreachable ({exc})") from None
    admin = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ratehound-login-check",
                                 request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000), **security.kafka_client_config())
        admin.describe_cluster()
    except (KafkaError, OSError) as exc:
        if security.uses_sasl:
            hint = "wrong username or password, a mechanism the broker does not enable, or another protocol"
        elif security.uses_tls:
            hint = "a certificate not signed by RATEHOUND_KAFKA_SSL_CAFILE, another hostname, or no TLS there"
        else:
            hint = "a listener that wants SASL or TLS (set RATEHOUND_KAFKA_SECURITY_PROTOCOL)"
        raise KafkaLoginError(f"kafka at {bootstrap} accepts connections but refused the login "
                              f"({security.describe()}): {hint}; client said {exc!r}") from None
    finally:
        if admin is not None:
            admin.close()
