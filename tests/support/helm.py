"""helm for the chart's tests: the binary, and `helm template` of helm/kqueue with the tests' settings."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kqueue"
KUBE_VERSION = "1.30.0"
RELEASE = "ci"
FULLNAME = f"{RELEASE}-kqueue"

Doc = dict[str, Any]


@cache
def helm_binary() -> str:
    """$KQUEUE_HELM, else the pinned helm from .ci/install-helm (the first build takes minutes)."""
    path = os.environ.get("KQUEUE_HELM")
    if path:
        assert os.access(path, os.X_OK), f"KQUEUE_HELM={path} is not an executable"
        return path
    done = subprocess.run([str(ROOT / ".ci" / "install-helm")], capture_output=True, text=True, timeout=1200,
                          check=False)
    assert done.returncode == 0, f".ci/install-helm failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/kqueue-helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/kqueue-helm-config",
                               "HELM_DATA_HOME": "/tmp/kqueue-helm-data"})


def template(helm: str, values: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_helm(helm, "template", RELEASE, str(CHART), "-f", str(values), "--kube-version", KUBE_VERSION,
                    "--namespace", "shop", *extra)


def documents(done: subprocess.CompletedProcess[str]) -> list[Doc]:
    """The objects a successful `helm template` printed."""
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]
