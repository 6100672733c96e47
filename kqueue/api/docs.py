"""The API docs page (`kqueue api --docs`): Swagger UI served from the installed swagger-ui-bundle
package, never from a CDN (a page that loads unpinned scripts from elsewhere would run them with
the API's origin, and an offline cluster could not show it)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from kqueue.api.browser import DOCS_PATH

NEEDS = "--docs needs the swagger-ui-bundle package: pip install 'kqueue[docs]'"


class DocsUnavailable(RuntimeError):
    pass


def swagger_ui_files() -> Path:
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError:
        raise DocsUnavailable(NEEDS) from None
    return Path(swagger_ui_path)


def add_docs(api: FastAPI, static: Path) -> None:
    """/docs: the page; /docs/assets: Swagger UI's own files."""
    assets = swagger_ui_files()
    api.mount(f"{DOCS_PATH}/assets", StaticFiles(directory=assets), name="docs-assets")

    @api.get(DOCS_PATH, include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(static / "docs.html")
