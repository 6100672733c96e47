"""Kafka client security settings: env / file / flags -> the librdkafka dict every client gets, their
precedence and validation, and secrets kept out of logs, errors and --help."""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from kqueue.core.errors import KqueueError
from kqueue.transport import config, security
from kqueue.transport.client_log import ClientLog
from kqueue.transport.security import KafkaSettingsError

SECRET = "pa55-Word!never-shown"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KQUEUE_KAFKA_* from outside; configure() and the environment as they were afterwards (the
    CLI exports its flags as variables)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(security.ENV_PREFIX) or name == "KQUEUE_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    security.configure(check=False)
    yield
    security.configure(check=False)
    os.environ.clear()
    os.environ.update(saved)


def write(tmp_path: Path, text: str, name: str = "client.properties") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


SCRAM = {
    "KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KQUEUE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KQUEUE_KAFKA_SASL_USERNAME": "svc-orders",
    "KQUEUE_KAFKA_SASL_PASSWORD": SECRET,
}


def set_env(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


# -- mapping ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variable", "prop"), [
    ("KQUEUE_KAFKA_SECURITY_PROTOCOL", "security.protocol"),
    ("KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", "sasl.oauthbearer.client.secret"),
    ("KQUEUE_KAFKA_SSL_KEY_LOCATION", "ssl.key.location"),
    ("KQUEUE_KAFKA_LOG_LEVEL", "log_level"),  # librdkafka spells a few with underscores
    ("KQUEUE_KAFKA_ENABLE_SASL_QUEUE", "enable_sasl_queue"),
])
def test_variable_names_map_to_librdkafka_properties_and_back(variable: str, prop: str) -> None:
    assert security.property_name(variable) == prop
    assert security.env_name(prop) == variable


def test_environment_variables_become_the_librdkafka_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**SCRAM, "KQUEUE_KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
                          "KQUEUE_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/kafka/client.pem",
                          "KQUEUE_KAFKA_SSL_KEY_LOCATION": "/etc/kafka/client.key",
                          "KQUEUE_KAFKA_CLIENT_DNS_LOOKUP": "use_all_dns_ips",
                          "KQUEUE_KAFKA_SSL_KEY_PASSWORD": "",  # a chart may render every variable: empty is unset
                          "KQUEUE_OTHER": "not ours"})
    assert security.kafka_settings() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-orders",
        "sasl.password": SECRET, "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem", "ssl.key.location": "/etc/kafka/client.key",
        "client.dns.lookup": "use_all_dns_ips",
    }


def test_a_java_style_properties_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "# Confluent Cloud style\n"
                           "bootstrap.servers=pkc-1.example.com:9092\n"
                           "security.protocol = SASL_SSL\n"
                           "! also a comment\n\n"
                           "sasl.mechanisms=PLAIN\n"  # librdkafka's alias of sasl.mechanism
                           "sasl.username: key-1\n"
                           f"sasl.password={SECRET}=with=equals\n"
                           "sasl.oauthbearer.extensions=a=1,\\\n"
                           "    b=2\n")
    monkeypatch.setenv(security.CONFIG_FILE_ENV, str(path))
    assert security.kafka_settings() == {
        "bootstrap.servers": "pkc-1.example.com:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.username": "key-1", "sasl.password": f"{SECRET}=with=equals", "sasl.oauthbearer.extensions": "a=1,b=2",
    }


def test_flags_win_over_variables_which_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "client.id=from-file\nlinger.ms=1\nsocket.timeout.ms=1000\nsasl.username=file-user\n")
    monkeypatch.setenv(security.CONFIG_FILE_ENV, str(path))
    set_env(monkeypatch, {"KQUEUE_KAFKA_LINGER_MS": "2", "KQUEUE_KAFKA_SOCKET_TIMEOUT_MS": "2000"})
    security.configure({"socket.timeout.ms": "3000"})
    settings = security.kafka_settings()
    assert (settings["client.id"], settings["linger.ms"], settings["socket.timeout.ms"]) == ("from-file", "2", "3000")
    # configure(config_file=...) (the CLI's --kafka-config) stands in for KQUEUE_KAFKA_CONFIG
    other = write(tmp_path, "client.id=from-flag-file\n", "other.properties")
    security.configure(config_file=other)
    assert security.kafka_settings()["client.id"] == "from-flag-file"
    assert "sasl.username" not in security.kafka_settings()


def test_values_are_normalised_and_aliases_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**SCRAM, "KQUEUE_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
                          "KQUEUE_KAFKA_SASL_MECHANISM": "scram-sha-256"})
    security.configure({"sasl.mechanisms": "plain"})  # the alias, from a stronger source, wins
    settings = security.kafka_settings()
    assert settings["security.protocol"] == "SASL_PLAINTEXT" and settings["sasl.mechanism"] == "PLAIN"
    assert "sasl.mechanisms" not in settings


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variables", "message"), [
    ({"KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SLL"},
     "security.protocol (from KQUEUE_KAFKA_SECURITY_PROTOCOL) must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({**SCRAM, "KQUEUE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"},
     "sasl.mechanism (from KQUEUE_KAFKA_SASL_MECHANISM) must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, "
     "OAUTHBEARER, GSSAPI"),
    ({**SCRAM, "KQUEUE_KAFKA_SASL_PASSWORD": ""},
     "sasl.mechanism SCRAM-SHA-512 needs sasl.password: set KQUEUE_KAFKA_SASL_PASSWORD"),
    ({"KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KQUEUE_KAFKA_SASL_MECHANISM": "PLAIN",
      "KQUEUE_KAFKA_SASL_PASSWORD": SECRET},
     "sasl.mechanism PLAIN needs sasl.username: set KQUEUE_KAFKA_SASL_USERNAME"),
    ({"KQUEUE_KAFKA_SASL_MECHANISM": "PLAIN", "KQUEUE_KAFKA_SASL_USERNAME": "u", "KQUEUE_KAFKA_SASL_PASSWORD": SECRET},
     "is set but security.protocol is PLAINTEXT (the default), so it would not be used"),
    ({"KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "no sasl.mechanism is set: set KQUEUE_KAFKA_SASL_MECHANISM"),
    ({"KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KQUEUE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
      "KQUEUE_KAFKA_SASL_OAUTHBEARER_METHOD": "oidc", "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "kqueue",
      "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": SECRET},
     "sasl.oauthbearer.method oidc needs sasl.oauthbearer.token.endpoint.url: set "
     "KQUEUE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL"),
    ({"KQUEUE_KAFKA_GROUP_ID": "mine"}, "group.id (from KQUEUE_KAFKA_GROUP_ID) cannot be set: kqueue owns it"),
    ({"KQUEUE_KAFKA_ISOLATION_LEVEL": "read_uncommitted"}, "isolation.level (from KQUEUE_KAFKA_ISOLATION_LEVEL) "
                                                           "cannot be set: kqueue owns it (workers must read only"),
    ({"KQUEUE_KAFKA_SASL_JAAS_CONFIG": f"PlainLoginModule required password='{SECRET}';"},
     "sasl.jaas.config (from KQUEUE_KAFKA_SASL_JAAS_CONFIG) is a Java client setting"),
    ({security.CONFIG_FILE_ENV: "/no/such/client.properties"},
     "cannot read the Kafka client config /no/such/client.properties (from KQUEUE_KAFKA_CONFIG): No such file"),
])
def test_unusable_settings_are_one_line_errors_without_secrets(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str) -> None:
    set_env(monkeypatch, variables)
    with pytest.raises(KafkaSettingsError) as caught:
        security.kafka_settings()
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and SECRET not in text
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KqueueError)


@pytest.mark.parametrize("key", ["group.id", "group.instance.id", "enable.auto.commit", "enable.auto.offset.store",
                                 "auto.offset.reset", "isolation.level", "transactional.id", "enable.idempotence",
                                 "acks", "request.required.acks", "partitioner", "message.max.bytes",
                                 "group.protocol", "partition.assignment.strategy"])
def test_what_kqueue_owns_is_refused_from_every_source(key: str) -> None:
    with pytest.raises(KafkaSettingsError, match="kqueue owns it"):
        security.configure({key: "x"})
    assert security.kafka_settings() == {}  # a refused configure() changes nothing


def test_bootstrap_servers_may_come_from_the_settings_but_the_given_servers_win(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(security.CONFIG_FILE_ENV, str(write(tmp_path, "bootstrap.servers=cloud:9092\n")))
    assert config.resolve_bootstrap(None) == "cloud:9092"
    assert config.resolve_bootstrap("explicit:9092") == "explicit:9092"
    monkeypatch.setenv("KQUEUE_BOOTSTRAP_SERVERS", "env:9092")
    assert config.resolve_bootstrap(None) == "env:9092"
    assert config.client_config("given:9092")["bootstrap.servers"] == "given:9092"


def test_a_malformed_file_line_is_named_but_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(security.CONFIG_FILE_ENV, str(write(tmp_path, f"client.id=a\n{SECRET}\n")))
    with pytest.raises(KafkaSettingsError, match=r"client.properties line 2: expected key=value") as caught:
        security.kafka_settings()
    assert SECRET not in str(caught.value)


def test_a_malformed_kafka_option_is_refused_without_echoing_it() -> None:
    assert security.parse_option(f"sasl.password={SECRET}") == ("sasl.password", SECRET)
    assert security.parse_option("sasl.oauthbearer.config=a=b c=d") == ("sasl.oauthbearer.config", "a=b c=d")
    for bad in (f"sasl.password{SECRET}", f"={SECRET}"):
        with pytest.raises(KafkaSettingsError) as caught:
            security.parse_option(bad, 3)
        assert "use number 3" in str(caught.value) and SECRET not in str(caught.value)


# -- every client gets them -------------------------------------------------------------------------
def test_every_client_config_carries_the_settings_under_kqueues_own(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**SCRAM, "KQUEUE_KAFKA_LINGER_MS": "50", "KQUEUE_KAFKA_FETCH_WAIT_MAX_MS": "250"})
    wanted = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-orders",
              "sasl.password": SECRET}
    producer = config.producer_config("b:9092", **{"transactional.id": "t-1"})
    consumer = config.consumer_config("b:9092", "group-1")
    classic = config.consumer_config("b:9092", "group-1", protocol="classic")
    for built in (config.client_config("b:9092"), producer, consumer, classic):
        assert wanted.items() <= built.items(), built
        assert built["bootstrap.servers"] == "b:9092" and built["logger"] is config.CLIENT_LOG
    # tuning kqueue picked gives way to the user's; its guarantees do not
    assert producer["linger.ms"] == "50" and consumer["fetch.wait.max.ms"] == "250"
    assert (producer["acks"], producer["enable.idempotence"], producer["transactional.id"]) == ("all", True, "t-1")
    assert (consumer["isolation.level"], consumer["enable.auto.commit"]) == ("read_committed", False)
    assert classic["session.timeout.ms"] == 10000
    assert config.client_config("b:9092", user_settings=False) == {"bootstrap.servers": "b:9092",
                                                                   "logger": config.CLIENT_LOG}


def test_admin_clients_get_them_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from kqueue.transport import admin

    seen: list[dict[str, object]] = []

    class Recorder:
        def __init__(self, settings: dict[str, object]) -> None:
            seen.append(settings)

    monkeypatch.setattr(admin, "AdminClient", Recorder)
    set_env(monkeypatch, SCRAM)
    admin.make_admin("b:9092")
    assert seen[0]["sasl.password"] == SECRET and seen[0]["security.protocol"] == "SASL_SSL"
    admin.make_admin("b:9092", user_settings=False)  # the dev cluster's PLAINTEXT probe
    assert "sasl.password" not in seen[1]


def test_a_refusal_by_the_broker_reads_as_such() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from kqueue.transport.admin import unreachable

    refused = KafkaException(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    assert unreachable("b:9092", 10, refused, "to set up queue 'q'").startswith(
        "Kafka at b:9092 refused kqueue's credentials to set up queue 'q' (SASL authentication error: invalid "
        "credentials); are sasl.mechanism, sasl.username and sasl.password right")
    tls = KafkaException(KafkaError(KafkaError._SSL, "certificate verify failed"))
    assert unreachable("b:9092", 10, tls, "to list queues").startswith("TLS with Kafka at b:9092 failed to list queues")
    away = KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out"))
    assert unreachable("b:9092", 10, away, "to list queues").startswith("Kafka at b:9092 did not answer within 10s")


def test_an_invalid_setting_stops_client_creation() -> None:
    os.environ["KQUEUE_KAFKA_SECURITY_PROTOCOL"] = "TLS"
    with pytest.raises(KafkaSettingsError):
        config.producer_config("b:9092")


def test_oauthbearer_oidc_maps_and_librdkafka_accepts_it(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """No OIDC provider here: the mapping, and that librdkafka takes the settings (not end to end)."""
    set_env(monkeypatch, {"KQUEUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KQUEUE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                          "KQUEUE_KAFKA_SASL_OAUTHBEARER_METHOD": "OIDC",
                          "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "kqueue-worker",
                          "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": SECRET,
                          "KQUEUE_KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka",
                          "KQUEUE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "http://127.0.0.1:9/oauth2/token"})
    settings = config.producer_config("127.0.0.1:9")
    assert settings["sasl.oauthbearer.method"] == "oidc"
    assert settings["sasl.oauthbearer.client.secret"] == SECRET
    with caplog.at_level(logging.DEBUG):
        producer = Producer(settings)  # raises on a setting librdkafka refuses
        producer.poll(0.5)
        producer.flush(0)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# -- secrets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "secret"), [
    ("sasl.password", True), ("sasl.oauthbearer.client.secret", True), ("ssl.key.password", True),
    ("ssl.keystore.password", True), ("ssl.key.pem", True), ("ssl_key", True), ("sasl.oauthbearer.config", True),
    ("sasl.jaas.config", True), ("sasl.oauthbearer.assertion.private.key.passphrase", True),
    ("SASL.PASSWORD", True), ("some.future.secret", True),
    ("sasl.username", False), ("ssl.key.location", False), ("ssl.certificate.pem", False),
    ("sasl.oauthbearer.client.id", False), ("bootstrap.servers", False),
])
def test_which_properties_are_secret(key: str, secret: bool) -> None:
    assert security.is_secret(key) is secret


def test_redacted_masks_secret_values_only() -> None:
    shown = security.redacted({"sasl.username": "u", "sasl.password": SECRET, "ssl.key.password": "k",
                               "sasl.oauthbearer.client.secret": "c", "ssl.ca.location": "/ca.pem"})
    assert shown == {"sasl.username": "u", "sasl.password": "***", "ssl.key.password": "***",
                     "sasl.oauthbearer.client.secret": "***", "ssl.ca.location": "/ca.pem"}


def test_scrub_removes_every_configured_secret_from_any_source(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"connect failed with {SECRET}, key pw file-key-pw, oidc flag-client-secret; user svc-orders"
    assert security.scrub(text) == text  # nothing configured: nothing to hide
    monkeypatch.setenv(security.CONFIG_FILE_ENV, str(write(tmp_path, "ssl.key.password=file-key-pw\n")))
    monkeypatch.setenv("KQUEUE_KAFKA_SASL_PASSWORD", SECRET)
    security.configure({"sasl.oauthbearer.client.secret": "flag-client-secret"}, check=False)
    assert security.scrub(text) == "connect failed with ***, key pw ***, oidc ***; user svc-orders"


def test_scrub_works_even_when_the_settings_are_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"KQUEUE_KAFKA_SECURITY_PROTOCOL": "bogus", "KQUEUE_KAFKA_SASL_PASSWORD": SECRET})
    assert security.scrub(f"x{SECRET}y") == "x***y"


def _private_logger(name: str) -> tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO]:
    """A logger writing to a string only (not propagating to pytest's handlers); remove its handler after."""
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    return logger, handler, stream


def _log_failure(logger: logging.Logger) -> None:
    """An exception whose message holds the secret, logged with its traceback."""
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logger.exception("boom")


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KQUEUE_KAFKA_SASL_PASSWORD", SECRET)
    logger, handler, stream = _private_logger("test.kafka_security.redaction")
    try:
        logger.warning("plain %s", SECRET)
        assert SECRET in stream.getvalue()  # the handler alone lets it through
        stream.truncate(0)
        assert security.install_log_redaction(logger) is security.install_log_redaction(logger)  # idempotent
        assert handler.filters.count(security.install_log_redaction(logger)) == 1
        logger.warning("args %s and %r", SECRET, {"sasl.password": SECRET})
        logger.warning(f"in the message {SECRET}")
        handler.setFormatter(logging.Formatter("%(message)s error=%(error)s"))
        logger.warning("extra", extra={"error": f"handler said {SECRET}"})
        handler.setFormatter(None)
        _log_failure(logger)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out
    assert "args *** and {'sasl.password': '***'}" in out and "in the message ***" in out
    assert "RuntimeError: failed with ***" in out and "extra error=handler said ***" in out


def test_json_log_lines_carry_scrubbed_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-json-logger renders exc_info itself; the filter must leave it only the clean text."""
    from kqueue.observe.logs import formatter

    monkeypatch.setenv("KQUEUE_KAFKA_SASL_PASSWORD", SECRET)
    logger, handler, stream = _private_logger("test.kafka_security.json")
    handler.setFormatter(formatter("json"))
    security.install_log_redaction(logger)
    try:
        _log_failure(logger)
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert SECRET not in stream.getvalue()
    assert "RuntimeError: failed with ***" in line["exc_info"]


def test_install_log_redaction_covers_the_root_loggers_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers = [logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())]
    monkeypatch.setattr(root, "handlers", handlers)  # not pytest's own: the filter must not outlive the test
    security.install_log_redaction()
    assert all(any(isinstance(f, security.RedactingFilter) for f in h.filters) for h in handlers)


def test_librdkafkas_own_log_lines_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrubbed where kqueue receives them (client_log.py), whatever handlers the application has."""
    monkeypatch.setenv("KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", SECRET)
    stream = io.StringIO()
    logger = logging.getLogger("kqueue.kafka")
    handler = logging.StreamHandler(stream)
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    ClientLog().log(3, "OIDC|rdkafka#producer-1| token request with secret %s failed", SECRET)
    assert stream.getvalue() == "OIDC|rdkafka#producer-1| token request with secret *** failed\n"


# -- the CLI ------------------------------------------------------------------------------------------
@functools.cache
def _app() -> object:
    from kqueue.cli import main

    main._register_commands()  # once: each call adds the commands again
    return main.app


def cli() -> tuple[CliRunner, object]:
    return CliRunner(), _app()


def test_fail_scrubs_its_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kqueue.cli.common import fail

    monkeypatch.setenv("KQUEUE_KAFKA_SASL_PASSWORD", SECRET)
    exit_ = fail(f"broker said {SECRET} is wrong", 2)
    err = capsys.readouterr().err
    assert exit_.exit_code == 2 and "broker said *** is wrong" in err and SECRET not in err


def test_help_shows_the_options_and_never_a_variables_value(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    path = write(tmp_path, "ssl.key.password=file-secret-pw\n")
    set_env(monkeypatch, {**SCRAM, security.CONFIG_FILE_ENV: str(path)})
    runner, app = cli()
    shown = ""
    for args in (["--help"], ["produce", "--help"], ["consume", "--help"], ["queue", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        shown += result.output
    assert SECRET not in shown and "svc-orders" not in shown and "file-secret-pw" not in shown
    text = " ".join(shown.replace("│", " ").split())
    for option in ("--kafka-config", "--kafka-option", "-X", "--security-protocol", "--sasl-mechanism",
                   "--sasl-username", "KQUEUE_KAFKA_CONFIG"):
        assert option in text
    assert "the command line is visible to others in ps" in text and "--sasl-password" not in text


def test_cli_flags_land_in_the_settings_over_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    set_env(monkeypatch, {**SCRAM, "KQUEUE_KAFKA_SASL_USERNAME": "env-user", "KQUEUE_KAFKA_CLIENT_ID": "env-id"})
    path = write(tmp_path, "client.id=file-id\nsocket.timeout.ms=1234\n")
    runner, app = cli()
    result = runner.invoke(app, ["--kafka-config", str(path), "--security-protocol", "sasl_plaintext",  # type: ignore[arg-type]
                                 "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "flag-user",
                                 "-X", "client.id=flag-id", "-X", "log_level=7", "queue", "--help"])
    assert result.exit_code == 0, result.output
    settings = security.kafka_settings()
    assert settings["sasl.username"] == "flag-user" and settings["client.id"] == "flag-id"
    assert settings["security.protocol"] == "SASL_PLAINTEXT" and settings["sasl.mechanism"] == "SCRAM-SHA-256"
    assert settings["socket.timeout.ms"] == "1234" and settings["sasl.password"] == SECRET
    # ...and as variables for the processes it starts (consume --processes, the demo's workers)
    assert os.environ["KQUEUE_KAFKA_SASL_USERNAME"] == "flag-user" and os.environ["KQUEUE_KAFKA_LOG_LEVEL"] == "7"
    assert os.environ[security.CONFIG_FILE_ENV] == str(path.absolute())


@pytest.mark.parametrize(("args", "message"), [
    (["-X", f"sasl.password{SECRET}"], "-X/--kafka-option takes KEY=VALUE"),
    (["-X", "enable.idempotence=false"], "enable.idempotence (from the command line) cannot be set: kqueue owns it"),
    (["--security-protocol", "TLS"], "security.protocol (from the command line) must be one of"),
    (["--kafka-config", "/no/such.properties"], "cannot read the Kafka client config /no/such.properties "
                                                "(from --kafka-config)"),
    (["--sasl-mechanism", "PLAIN", "-X", "sasl.mechanism=SCRAM-SHA-256"], "--sasl-mechanism and -X sasl.mechanism"),
    (["-b", "a:9092", "-X", "bootstrap.servers=b:9092"], "give the bootstrap servers once"),
    (["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--sasl-username", "u"],
     "needs sasl.password: set KQUEUE_KAFKA_SASL_PASSWORD"),
])
def test_bad_security_flags_are_one_line_usage_errors(args: list[str], message: str) -> None:
    runner, app = cli()
    result = runner.invoke(app, [*args, "queue", "list"], env={"COLUMNS": "300"})  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert SECRET not in result.output


def test_dev_commands_ignore_the_users_kafka_settings() -> None:
    os.environ["KQUEUE_KAFKA_SECURITY_PROTOCOL"] = "bogus"  # would fail any other command
    runner, app = cli()
    result = runner.invoke(app, ["dev", "--help"])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output


def test_run_scrubs_unexpected_errors_and_tracebacks(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from kqueue.cli import main

    monkeypatch.setenv("KQUEUE_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setattr(main, "_register_commands", lambda: None)
    monkeypatch.setattr(sys, "argv", ["kqueue", "produce"])

    def explode(**_: object) -> None:
        raise RuntimeError(f"client said {SECRET}")

    monkeypatch.setattr(main, "app", explode)
    with pytest.raises(SystemExit) as exited:
        main.run()
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "error: RuntimeError: client said ***" in err and SECRET not in err
    monkeypatch.setenv("KQUEUE_DEBUG", "1")
    with pytest.raises(SystemExit):
        main.run()
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: client said ***" in err and SECRET not in err

    def refuse(**_: object) -> None:
        raise KafkaSettingsError("security.protocol (from KQUEUE_KAFKA_SECURITY_PROTOCOL) must be one of ...")

    monkeypatch.setattr(main, "app", refuse)
    with pytest.raises(SystemExit) as exited:
        main.run()
    assert exited.value.code == 2 and "error: security.protocol" in capsys.readouterr().err
