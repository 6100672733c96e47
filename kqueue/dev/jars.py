"""Fetch Apache Kafka's broker jars from Maven Central once, into the user cache.

Maven resolves the exact dependency tree Apache Kafka publishes for `kafka_2.13`, so the broker we run
is the real one, byte for byte, without needing a Kafka tarball or Docker.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from kqueue.dev.paths import KAFKA_VERSION, SCALA_VERSION, jars_dir

# slf4j 1.7 is what Kafka's server links against; this binding sends its logs to log4j2 so
# `kqueue dev logs` has something to show.
_LOG4J_VERSION = "2.25.5"
_READY_MARKER = ".complete"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.kqueue</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_ARTIFACT_LINE = re.compile(r"(Downloading|Downloaded|Copying) .*?([\w.\-]+\.(?:jar|pom))")


class ToolMissing(RuntimeError):
    """A command-line tool kqueue needs is not installed."""


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"`{name}` was not found on PATH: install {hint}")
    return path


def jars_ready(version: str = KAFKA_VERSION) -> bool:
    return (jars_dir(version) / _READY_MARKER).exists()


def classpath(version: str = KAFKA_VERSION) -> str:
    return str(jars_dir(version) / "libs" / "*")


def ensure_kafka_jars(
    version: str = KAFKA_VERSION,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """Return the folder holding Kafka's jars, downloading them with Maven the first time."""
    target = jars_dir(version)
    libs = target / "libs"
    if jars_ready(version):
        return libs
    mvn = require_tool("mvn", "Apache Maven (e.g. `apt-get install maven`)")
    require_tool("java", "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)")
    target.mkdir(parents=True, exist_ok=True)
    (target / "pom.xml").write_text(_POM.format(scala=SCALA_VERSION, kafka=version, log4j=_LOG4J_VERSION))
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-B", "-f", str(target / "pom.xml"),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]
    log_lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log_lines.append(line)
            match = _ARTIFACT_LINE.search(line)
            if match and on_progress is not None:
                on_progress(f"{match.group(1).lower()} {match.group(2)}")
        code = proc.wait()
    if code != 0:
        tail = "".join(log_lines[-20:])
        raise RuntimeError(f"Maven could not fetch Apache Kafka {version} (exit {code}):\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (target / _READY_MARKER).write_text(version)
    return libs
