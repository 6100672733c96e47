"""kqueue against a real broker that authenticates (SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
driven through the CLI as a user would: credentials from KQUEUE_KAFKA_* variables, a config file and
-X flags; tasks produced and consumed end to end; a wrong password is one line; no password is ever
printed. (OAUTHBEARER has no OIDC provider here: tests/unit/test_kafka_security.py covers its mapping.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.kafka import unique, wait_for_members
from tests.support.sasl_broker import SaslBroker, sasl_broker
from tests.support.worker import recorded, wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "alice-Pw-7c1e55", "bob": "bob-Pw-2f9a0d", "carol": "carol-Pw-8be413"}
WRONG = "wrong-Pw-00d1e5"
SECRETS = (*PASSWORDS.values(), WRONG)


@pytest.fixture(scope="module")
def broker() -> Iterator[SaslBroker]:
    with sasl_broker({"alice": PASSWORDS["alice"]},
                     {"bob": ("SCRAM-SHA-256", PASSWORDS["bob"]), "carol": ("SCRAM-SHA-512", PASSWORDS["carol"])}) as b:
        yield b


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any Kafka settings of its own, plus `variables`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KQUEUE_KAFKA_") and k not in ("KQUEUE_BOOTSTRAP_SERVERS", "KQUEUE_DEBUG")}
    return {**env, **variables}


def kq(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=timeout, check=False)
    assert_no_secret(result.stdout + result.stderr)
    return result


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password was printed:\n{text}"


def produce(queue: str, count: int, tmp_path: Path, *global_args: str, env: dict[str, str]) -> None:
    payloads = tmp_path / f"{queue}.jsonl"
    payloads.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(count)))
    result = kq(*global_args, "produce", queue, "--type", "record", "--file", str(payloads), env=env)
    assert result.returncode == 0, result.stderr
    assert f"enqueued {count} record task(s)" in result.stdout


@contextmanager
def consuming(queue: str, count: int, tmp_path: Path, *global_args: str, env: dict[str, str],
              extra: tuple[str, ...] = (), group: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`kqueue consume --log-level DEBUG` while the block runs, then until `count` tasks are recorded;
    then stopped, and its output checked: no traceback, no password."""
    log = tmp_path / f"{queue}.done"
    out = tmp_path / f"{queue}.out"
    with out.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kqueue", *global_args, "consume", "--app", "tests.apps.recorder:app",
             "--group", group or unique("g"), "--log-level", "DEBUG", "--grace", "5", *extra],
            env={**env, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}, cwd=ROOT, stdout=sink, stderr=sink,
            start_new_session=True)
        try:
            yield worker
            wait_for(lambda: len(set(recorded(log))) >= count or worker.poll() is not None, timeout=40,
                     what=f"{count} tasks consumed")
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    text = out.read_text(errors="replace")
    assert len(set(recorded(log))) == count, text[-3000:]
    assert "Traceback" not in text and "error" not in text.lower(), text[-3000:]
    assert "DEBUG" in text  # it really logged at DEBUG (and still printed no password)
    assert_no_secret(text)


def test_credentials_from_environment_variables_scram_sha_256(broker: SaslBroker, tmp_path: Path) -> None:
    env = environment(KQUEUE_BOOTSTRAP_SERVERS=broker.sasl, KQUEUE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                      KQUEUE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256", KQUEUE_KAFKA_SASL_USERNAME="bob",
                      KQUEUE_KAFKA_SASL_PASSWORD=PASSWORDS["bob"])
    queue = unique("sec-env")
    produce(queue, 5, tmp_path, env=env)
    with consuming(queue, 5, tmp_path, env=env):
        pass


def test_credentials_from_a_config_file_plain(broker: SaslBroker, tmp_path: Path) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text("# as a platform team would hand it out\n"
                          f"bootstrap.servers={broker.sasl}\n"
                          "security.protocol=SASL_PLAINTEXT\n"
                          "sasl.mechanism=PLAIN\n"
                          "sasl.username=alice\n"
                          f"sasl.password={PASSWORDS['alice']}\n")
    queue = unique("sec-file")
    produce(queue, 3, tmp_path, "--kafka-config", str(properties), env=environment())  # servers from the file too
    with consuming(queue, 3, tmp_path, env=environment(KQUEUE_KAFKA_CONFIG=str(properties))):
        pass


def test_credentials_from_flags_scram_sha_512_reach_worker_processes(broker: SaslBroker, tmp_path: Path) -> None:
    flags = ("-b", broker.sasl, "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512",
             "--sasl-username", "carol", "-X", f"sasl.password={PASSWORDS['carol']}")
    queue, group = unique("sec-flags"), unique("g")
    # --processes 2: the children are started with -b only; the flags reach them as KQUEUE_KAFKA_* variables
    with consuming(queue, 4, tmp_path, *flags, env=environment(), extra=("--processes", "2"), group=group):
        wait_for_members(broker.plaintext, group, 2, timeout=40)  # both children logged in and joined
        produce(queue, 4, tmp_path, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-512",
                "-X", "sasl.username=carol", "-X", f"sasl.password={PASSWORDS['carol']}", "-b", broker.sasl,
                env=environment())


def test_a_wrong_password_is_one_line_without_it(broker: SaslBroker) -> None:
    env = environment(KQUEUE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KQUEUE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
                      KQUEUE_KAFKA_SASL_USERNAME="bob", KQUEUE_KAFKA_SASL_PASSWORD=WRONG)
    started = time.monotonic()
    result = kq("-b", broker.sasl, "produce", unique("sec-wrong"), "--type", "t", "--json", "{}", env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"Kafka at {broker.sasl} refused kqueue's credentials" in result.stderr
    assert "KQUEUE_KAFKA_SASL_PASSWORD" in result.stderr
    assert time.monotonic() - started < 8  # refused at once, not after the 10 s timeout
    worker = kq("-b", broker.sasl, "consume", "--app", "tests.apps.recorder:app", "--group", unique("g"),
                "--log-level", "WARNING", env={**env, "KQ_TEST_QUEUE": unique("sec-wrong")})
    assert worker.returncode == 1 and "Traceback" not in worker.stderr, worker.stderr
    [error] = [line for line in worker.stderr.splitlines() if line.startswith("error:")]
    assert f"Kafka at {broker.sasl} refused kqueue's credentials" in error


def test_help_works_and_shows_no_secret_even_with_broken_settings() -> None:
    env = environment(KQUEUE_KAFKA_SECURITY_PROTOCOL="bogus", KQUEUE_KAFKA_SASL_PASSWORD=WRONG)
    result = kq("consume", "--help", env=env)
    assert result.returncode == 0, result.stderr
    refused = kq("queue", "list", env=env)
    assert refused.returncode == 2 and refused.stderr.startswith("error: security.protocol"), refused.stderr
