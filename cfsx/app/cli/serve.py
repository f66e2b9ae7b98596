"""``cfsx serve``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from cfsx.app.cli.common import DEFAULT_WORKERS, app, console, examples, reported_errors
from cfsx.errors import ConfigError


@app.command(
    epilog=examples(
        [
            "cfsx serve",
            "cfsx serve --model general-cfs4 --model mine.keras --store /data/cfsx-store --workers 4",
            "cfsx serve --host 0.0.0.0 --port 8080 --token-file ~/.cfsx-token",
            "cfsx serve --host 0.0.0.0 --no-token --store /data/cfsx-store --foreign-files",
        ]
    )
)
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    model: Annotated[
        list[str] | None, typer.Option(help="Model to serve: built-in name or .keras file (repeatable; default all).")
    ] = None,
    store: Annotated[Path, typer.Option(help="Directory for results, knowledge stores and feedback.")] = Path(
        "cfsx-serve"
    ),
    workers: Annotated[int | None, typer.Option(help="Interpretation worker processes " + DEFAULT_WORKERS)] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding a token that every request must carry (chmod 600).")
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token", help="Listen beyond this machine without a token (behind a proxy that authenticates)."
        ),
    ] = False,
    foreign_files: Annotated[
        bool,
        typer.Option(
            "--foreign-files", help="Start on a store that holds files cfsx serve did not make (they are left alone)."
        ),
    ] = False,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted (MB).")] = 64.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted (pixels).")] = 64 * 2**20,
    retention_days: Annotated[float, typer.Option(help="Days the uploads and result files are kept.")] = 30.0,
    queue: Annotated[int, typer.Option(help="Requests waiting or running before 503 (at least 8).")] = 16,
    replicates: Annotated[
        int, typer.Option(help="Decoded structures per image unless a request asks (0: CNN only, not stored).")
    ] = 1,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds an upload may stall while its body arrives (then 408).")
    ] = 30.0,
) -> None:
    """Serve interpretation as a web page and a JSON API, keeping every result and all feedback (docs/serve.md)."""
    with reported_errors():
        try:
            from cfsx.app.serve import ServeSettings, create_app, run, served_models
            from cfsx.app.serve_http import check_address, read_token
        except ImportError:
            from cfsx.errors import MissingDependencyError

            raise MissingDependencyError("cfsx serve needs its extra: pip install 'cfsx[serve]'") from None
        from cfsx.io.cpus import worker_count

        token = read_token(token_file) if token_file else None
        warning = check_address(host, port, token, no_token)
        if not (math.isfinite(max_upload_mb) and 0 < max_upload_mb <= 2**20):
            raise ConfigError(f"--max-upload-mb must be a number in (0, {2**20}], got {max_upload_mb!r}")
        settings = ServeSettings(
            models=served_models(list(model or ())), store=store, workers=worker_count(workers), token=token,
            max_upload_bytes=max(1, int(max_upload_mb * 2**20)), max_pixels=max_pixels, retention_days=retention_days,
            queue=queue, replicates=replicates, foreign_files=foreign_files, body_timeout=body_timeout,
        )  # fmt: skip
        served = create_app(settings)  # the store, the models and the knowledge stores checked, the store locked
        if warning:
            console.print(f"[yellow]{warning}[/yellow]", highlight=False)
        console.print(f"serving {', '.join(settings.models)} on http://{host}:{port}/ with {settings.workers} "
                      f"workers; store: {store}", highlight=False)  # fmt: skip
        run(served, host, port)
