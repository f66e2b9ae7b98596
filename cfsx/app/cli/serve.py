"""``cfsx serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfsx.app.cli.common import DEFAULT_WORKERS, app, console, examples, reported_errors


@app.command(
    epilog=examples(
        [
            "cfsx serve",
            "cfsx serve --model general-cfs4 --model mine.keras --store /data/cfsx-store --workers 4",
            "cfsx serve --host 0.0.0.0 --port 8080 --token-file ~/.cfsx-token",
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
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted (MB).")] = 64.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image accepted (pixels).")] = 64 * 2**20,
    retention_days: Annotated[float, typer.Option(help="Days the uploads and result files are kept.")] = 30.0,
    queue: Annotated[int, typer.Option(help="Requests waiting or running before 503 (at least 8).")] = 16,
    replicates: Annotated[
        int, typer.Option(help="Decoded structures per image unless a request asks (0: CNN only, not stored).")
    ] = 1,
) -> None:
    """Serve interpretation as a web page and a JSON API, keeping every result and all feedback (docs/serve.md)."""
    with reported_errors():
        try:
            from cfsx.app.serve import ServeSettings, read_token, run, served_models
        except ImportError:
            from cfsx.errors import MissingDependencyError

            raise MissingDependencyError("cfsx serve needs its extra: pip install 'cfsx[serve]'") from None
        from cfsx.io.cpus import worker_count

        settings = ServeSettings(
            models=served_models(list(model or ())), store=store, workers=worker_count(workers),
            token=read_token(token_file) if token_file else None, max_upload_bytes=int(max_upload_mb * 2**20),
            max_pixels=max_pixels, retention_days=retention_days, queue=queue, replicates=replicates,
        )  # fmt: skip
        console.print(f"serving {', '.join(settings.models)} on http://{host}:{port}/ with {settings.workers} "
                      f"workers; store: {store}", highlight=False)  # fmt: skip
        run(settings, host, port)
