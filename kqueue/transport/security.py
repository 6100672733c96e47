"""Kafka client settings from outside kqueue (TLS, SASL, any librdkafka property), and keeping their
secrets out of everything kqueue prints.

Where the settings come from, weakest first (read at every call, so a changed variable counts):

1. a Java-style properties file (``key=value``, ``#`` comments): ``KQUEUE_KAFKA_CONFIG=/path/client.properties``
   or ``kqueue --kafka-config FILE`` (or ``configure(config_file=...)``);
2. environment variables ``KQUEUE_KAFKA_<PROPERTY>``: the librdkafka property upper-cased with dots as
   underscores, e.g. ``KQUEUE_KAFKA_SASL_PASSWORD`` is ``sasl.password``;
3. ``configure({...})``: the SDK's way, and where the CLI's ``-X KEY=VALUE``, ``--security-protocol``,
   ``--sasl-mechanism`` and ``--sasl-username`` land.

An empty value counts as unset (a chart may render every variable). Every Kafka client kqueue creates
gets the merged result through ``kqueue.transport.config.client_config``. Properties kqueue itself owns
(``group.id``, ``isolation.level``, ``transactional.id``, ...) are refused with the reason.

Secrets (``sasl.password``, ``*.secret``, ``*.password``, private keys, ...) never leave through kqueue:
``redacted()`` for display, ``scrub()`` for any text, ``install_log_redaction()`` for log handlers.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kqueue.core.errors import KafkaSettingsError
from kqueue.transport.properties import parse_option, parse_properties, read_properties_file

__all__ = [
    "CLI_SOURCE", "CONFIG_FILE_ENV", "ENV_PREFIX", "RESERVED", "SASL_MECHANISMS", "SECURITY_PROTOCOLS",
    "KafkaSettingsError", "RedactingFilter", "bootstrap_setting", "canonical", "configure", "configured",
    "env_name", "install_log_redaction", "is_secret", "kafka_settings", "parse_option", "parse_properties",
    "property_name", "redacted", "scrub", "secret_values",
]

ENV_PREFIX = "KQUEUE_KAFKA_"
CONFIG_FILE_ENV = "KQUEUE_KAFKA_CONFIG"
MASK = "***"
CLI_SOURCE = "the command line"  # configure(source=...) from kqueue's CLI: its flags and --kafka-config

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
OAUTHBEARER_METHODS = ("default", "oidc")
_NEEDS_PASSWORD = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# librdkafka's own aliases, so two spellings of one property cannot disagree between sources.
_ALIASES = {
    "sasl.mechanisms": "sasl.mechanism",
    "metadata.broker.list": "bootstrap.servers",
    "request.required.acks": "acks",
    "sasl.oauthbearer.client.credentials.client.id": "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.credentials.client.secret": "sasl.oauthbearer.client.secret",
}

# The librdkafka properties set from text whose names hold underscores (all others use dots only), so
# KQUEUE_KAFKA_LOG_LEVEL means log_level, not "log.level".
_UNDERSCORED = ("log_level", "enabled_events", "enable_sasl_queue")

# What kqueue sets itself: overriding any of these would break a guarantee, so it is refused.
RESERVED: dict[str, str] = {
    "group.id": "kqueue names its consumer groups (kqueue consume --group)",
    "group.instance.id": "use kqueue consume --instance-id / KQUEUE_INSTANCE_ID",
    "group.protocol": "use kqueue consume --group-protocol",
    "group.remote.assignor": "kqueue relies on the range assignor to keep a key's lanes together",
    "partition.assignment.strategy": "use kqueue consume --group-protocol",
    "enable.auto.commit": "kqueue commits only the offsets of settled tasks",
    "enable.auto.offset.store": "kqueue commits only the offsets of settled tasks",
    "auto.offset.reset": "a new consumer group must start at the oldest queued task",
    "isolation.level": "workers must read only committed records (exactly-once settling)",
    "transactional.id": "kqueue gives each worker its own for exactly-once settling",
    "enable.idempotence": "retries must not duplicate or reorder tasks",
    "acks": "a task counts as enqueued only once every in-sync replica has it",
    "partitioner": "one key must map to one partition, the same as Java producers (key order)",
    "message.max.bytes": "kqueue fits routed records to its own limit (core/oversize.py)",
    "logger": "kqueue sends librdkafka's log lines through its own redacting log",
}

_JAVA_ONLY = {
    "sasl.jaas.config": "is a Java client setting: give sasl.username and sasl.password instead",
    "ssl.truststore.location": "is a Java client setting: give ssl.ca.location (a PEM file) instead",
    "ssl.truststore.password": "is a Java client setting: give ssl.ca.location (a PEM file) instead",
}

_SECRET_KEYS = frozenset({
    "sasl.password", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "ssl.key.password",
    "ssl.keystore.password", "ssl.key.pem", "ssl_key", "sasl.jaas.config",
    "sasl.oauthbearer.assertion.private.key.pem", "sasl.oauthbearer.assertion.private.key.passphrase",
})
_SECRET_ENDINGS = ("password", "secret", "passphrase", "key.pem", "token")


# -- names --------------------------------------------------------------------------------------------
def env_name(prop: str) -> str:
    """The variable for a librdkafka property: sasl.password -> KQUEUE_KAFKA_SASL_PASSWORD."""
    return ENV_PREFIX + prop.strip().upper().replace(".", "_")


def property_name(variable: str) -> str:
    """The librdkafka property of a KQUEUE_KAFKA_* variable (KQUEUE_KAFKA_SASL_PASSWORD -> sasl.password)."""
    rest = variable[len(ENV_PREFIX):] if variable.upper().startswith(ENV_PREFIX) else variable
    lowered = rest.lower()
    return lowered if lowered in _UNDERSCORED else lowered.replace("_", ".")


def canonical(key: str) -> str:
    """The property's name as kqueue keys it: lower case, librdkafka's aliases to one spelling."""
    key = key.strip().lower()
    return _ALIASES.get(key, key)


def is_secret(key: str) -> bool:
    """Whether a property's value is a secret (never shown, logged or put in an error message)."""
    key = key.strip().lower()
    return key in _SECRET_KEYS or key.endswith(_SECRET_ENDINGS)


# -- sources ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layer:
    values: dict[str, Any]
    origins: dict[str, str]  # key -> where it came from, for error messages


def _layer(values: Mapping[str, Any], origin: str | Mapping[str, str]) -> _Layer:
    out: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for raw_key, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # empty counts as unset
        key = canonical(raw_key)
        out[key] = value.strip() if isinstance(value, str) else value
        origins[key] = origin if isinstance(origin, str) else origin.get(raw_key, "the environment")
    return _Layer(out, origins)


@dataclass
class _Configured:
    settings: dict[str, Any]
    config_file: Path | None
    source: str


_lock = threading.Lock()
_configured = _Configured({}, None, "configure()")


def configure(settings: Mapping[str, Any] | None = None, *, config_file: str | os.PathLike[str] | None = None,
              source: str = "configure()", check: bool = True) -> None:
    """Process-wide Kafka client settings for every client kqueue creates from now on: any librdkafka
    property, e.g. ``configure({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "svc", "sasl.password": secret})``. They win over ``KQUEUE_KAFKA_*`` variables,
    which win over the config file; ``config_file`` stands in for ``KQUEUE_KAFKA_CONFIG``. Each call
    replaces the last (``configure()`` clears). ``check``: validate the merged result now (raises
    KafkaSettingsError, and nothing changes)."""
    global _configured
    new = _Configured(dict(settings or {}), Path(config_file) if config_file is not None else None, source)
    if check:
        _resolve(new, strict=True)
    with _lock:
        _configured = new


def configured() -> tuple[dict[str, Any], Path | None]:
    """What configure() set: (settings, config file)."""
    with _lock:
        return dict(_configured.settings), _configured.config_file


def _layers(conf: _Configured, strict: bool) -> list[_Layer]:
    env = os.environ
    if conf.config_file is not None:
        path: Path | None = conf.config_file
        file_origin = "--kafka-config" if conf.source == CLI_SOURCE else f"{conf.source} config_file"
    else:
        path = Path(env[CONFIG_FILE_ENV]).expanduser() if env.get(CONFIG_FILE_ENV, "").strip() else None
        file_origin = CONFIG_FILE_ENV
    layers = []
    if path is not None:
        layers.append(_layer(read_properties_file(path, file_origin, strict), str(path)))
    variables = {property_name(k): (k, v) for k, v in env.items()
                 if k.upper().startswith(ENV_PREFIX) and k.upper() != CONFIG_FILE_ENV}
    layers.append(_layer({p: v for p, (_, v) in variables.items()}, {p: k for p, (k, _) in variables.items()}))
    layers.append(_layer(conf.settings, conf.source))
    return layers


def _resolve(conf: _Configured, strict: bool) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer in _layers(conf, strict):
        merged.update(layer.values)
        origins.update(layer.origins)
    if strict:
        _validate(merged, origins)
    return merged


def kafka_settings() -> dict[str, Any]:
    """The merged, validated settings (file < KQUEUE_KAFKA_* < configure()); raises KafkaSettingsError."""
    with _lock:
        conf = _configured
    return _resolve(conf, strict=True)


def bootstrap_setting() -> str | None:
    """bootstrap.servers from these settings, if any (never raises: used to pick a default)."""
    with _lock:
        conf = _configured
    value = _resolve(conf, strict=False).get("bootstrap.servers")
    return str(value) if value else None


# -- validation ---------------------------------------------------------------------------------------
def _how_to_set(key: str, to: str = "") -> str:
    return f"set {env_name(key)}{to} (or {key} in the {CONFIG_FILE_ENV} file)"



def _one_of(settings: dict[str, Any], key: str, allowed: tuple[str, ...], where: Callable[[str], str]) -> str | None:
    """The setting upper-cased in place, if it is one of `allowed` (None when unset)."""
    value = settings.get(key)
    if value is None:
        return None
    upper = str(value).upper()
    if upper not in allowed:
        raise KafkaSettingsError(f"{where(key)} must be one of {', '.join(allowed)}, not {value!r}")
    settings[key] = upper
    return upper


def _validate(settings: dict[str, Any], origins: dict[str, str]) -> None:
    def where(key: str) -> str:
        return f"{key} (from {origins.get(key, 'kqueue')})"

    for key in settings:
        if key in RESERVED:
            raise KafkaSettingsError(f"{where(key)} cannot be set: kqueue owns it ({RESERVED[key]})")
        if key in _JAVA_ONLY:
            raise KafkaSettingsError(f"{where(key)} {_JAVA_ONLY[key]}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", key):  # the key is not shown: it may be a mistyped secret
            raise KafkaSettingsError(f"a key from {origins.get(key)} is not a librdkafka property name "
                                     "(letters, digits, '.', '_' and '-' only)")
    protocol = _one_of(settings, "security.protocol", SECURITY_PROTOCOLS, where)
    mechanism = _one_of(settings, "sasl.mechanism", SASL_MECHANISMS, where)
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    if mechanism is not None and not sasl:
        raise KafkaSettingsError(f"{where('sasl.mechanism')} is set but security.protocol is "
                                 f"{protocol or 'PLAINTEXT (the default)'}, so it would not be used: "
                                 f"set {env_name('security.protocol')} to SASL_SSL or SASL_PLAINTEXT")
    if sasl and mechanism is None:
        raise KafkaSettingsError(f"{where('security.protocol')} is {protocol} but no sasl.mechanism is set: "
                                 + _how_to_set("sasl.mechanism", f" to one of {', '.join(SASL_MECHANISMS)}"))
    if mechanism in _NEEDS_PASSWORD:
        for key in ("sasl.username", "sasl.password"):
            if key not in settings:
                raise KafkaSettingsError(f"sasl.mechanism {mechanism} needs {key}: {_how_to_set(key)}")
    if mechanism == "OAUTHBEARER":
        method = str(settings.get("sasl.oauthbearer.method", "default")).lower()
        if method not in OAUTHBEARER_METHODS:
            raise KafkaSettingsError(f"{where('sasl.oauthbearer.method')} must be default or oidc, not "
                                     f"{settings['sasl.oauthbearer.method']!r}")
        if "sasl.oauthbearer.method" in settings:
            settings["sasl.oauthbearer.method"] = method
        if method == "oidc":
            needed = ["sasl.oauthbearer.token.endpoint.url", "sasl.oauthbearer.client.id"]
            grant = str(settings.get("sasl.oauthbearer.grant.type", "client_credentials"))
            if grant == "client_credentials":
                needed.append("sasl.oauthbearer.client.secret")
            for key in needed:
                if key not in settings:
                    raise KafkaSettingsError(f"sasl.oauthbearer.method oidc needs {key}: {_how_to_set(key)}")


# -- secrets ------------------------------------------------------------------------------------------
def redacted(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit to show: every secret value replaced by ***."""
    return {key: (MASK if is_secret(key) and value not in (None, "") else value) for key, value in settings.items()}


SECRETS_REFRESH = 1.0  # seconds: how long secret_values() may reuse what it found
_secrets_cache: tuple[float, _Configured, list[str]] | None = None


def secret_values() -> list[str]:
    """Every secret value configured (any source, valid or not), longest first. Asked for on every log
    record, so what it finds is reused for up to SECRETS_REFRESH seconds: a variable or file changed
    while the process runs counts within that time; configure() counts at once."""
    global _secrets_cache
    with _lock:
        conf = _configured
    now = time.monotonic()
    cached = _secrets_cache
    if cached is not None and cached[1] is conf and now - cached[0] < SECRETS_REFRESH:
        return cached[2]
    values = _find_secrets(conf)
    _secrets_cache = (now, conf, values)
    return values


def _find_secrets(conf: _Configured) -> list[str]:
    found: set[str] = set()
    try:
        layers = _layers(conf, strict=False)
    except Exception:  # never let redaction itself fail
        layers = []
    for layer in layers:
        for key, value in layer.values.items():
            if is_secret(key) and isinstance(value, str | bytes) and value:
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                found.add(text)
                found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= 8)  # PEM lines
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every configured secret value replaced by ***."""
    for secret in secret_values() if secrets is None else sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Scrubs secret values out of a record's message, arguments, `extra` fields and traceback text (in
    place, so every handler after this one sees the clean record too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = scrub(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, secrets)
            # Formatters that render exc_info themselves (python-json-logger does) would print the
            # traceback unscrubbed: leave them the clean text only (every formatter falls back to it).
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, secrets)
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, scrub(value, secrets))  # extra= fields (the JSON format writes them)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach the redacting filter to every handler of ``logger`` (default: the root logger). A filter on
    a logger object applies only to records logged on that very logger, so it goes on the handlers:
    call this after the handlers exist (after logging.basicConfig). Idempotent."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER
