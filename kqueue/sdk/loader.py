"""Find a user's App from `pkg.module:attribute`, as `kqueue consume --app` names it."""

from __future__ import annotations

import importlib
import os
import sys

from kqueue.core.errors import KqueueError
from kqueue.sdk.app import App


def load_app(spec: str) -> App:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise KqueueError(f"--app must look like package.module:app, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, the current folder is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise KqueueError(f"cannot import {module_name!r}: {exc}") from exc
    except ValueError as exc:  # a decorator refusing a value as the module loads (a bad cron, ...)
        raise KqueueError(f"{module_name}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise KqueueError(f"{spec} is not a kqueue.App (found {type(app).__name__})")
    return app
