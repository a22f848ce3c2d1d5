"""``attnrec serve``: the HTTP service over one or more bundles, under uvicorn (registered in :mod:`attnrec.cli`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from attnrec.errors import ConfigError, require


def parse_models(model_dir: Path | None, models: list[str]) -> dict[str, Path]:
    """name -> bundle folder from the positional bundle (named ``default``) and ``--model name=dir`` options."""
    out: dict[str, Path] = {}
    if model_dir is not None:
        out["default"] = model_dir
    for spec in models:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ConfigError(f"--model {spec!r}: expected NAME=DIR (e.g. --model bpr=runs/bpr/model)")
        name = name.strip()  # " a" would otherwise slip past the check and replace "a"
        if name in out:
            raise ConfigError(f"--model {spec!r}: the name {name!r} is given twice")
        out[name] = Path(folder.strip())
    if not out:
        raise ConfigError("no bundle to serve: give RUN/model, or --model NAME=DIR")
    return out


def serve_cmd(
    model_dir: Annotated[
        Path | None, typer.Argument(help="the bundle to serve by default (RUN/model)", show_default=False)
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="another bundle as NAME=DIR, served under /models/NAME/ (repeatable)"),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="name of an environment variable holding the API key (Authorization: Bearer KEY)"),
    ] = None,
    warmup: Annotated[bool, typer.Option(help="build every model's lazy state at start-up")] = True,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="allow this origin by CORS (repeatable; none by default)"),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="the largest request body accepted")] = 2
    * 2**20,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads")] = None,
    trust_bundle: Annotated[
        bool, typer.Option("--trust-bundle", help="the bundles are from someone you trust (may import code)")
    ] = False,
    ann: Annotated[
        str,
        typer.Option(help="known-user top-k: auto (FAISS from 1M items), exact, or faiss (ann extra)"),
    ] = "auto",
) -> None:
    """Serve bundles over HTTP: POST /recommend, /predict, /explain, GET /items/ID/similar, /health, /ready,
    /metadata, /metrics, and the page at /. SIGHUP or POST /admin/reload reloads the bundles from their folders."""
    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    import torch

    from attnrec.experiments.config import check_threads
    from attnrec.serving.app import create_app

    bundles = parse_models(model_dir, model or [])
    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: the environment variable is unset or empty")
    if threads is not None:
        check_threads(threads)
        torch.set_num_threads(threads)
    app = create_app(
        bundles,
        api_key=key,
        cors_origins=cors_origin or (),
        warmup=warmup,
        max_body_bytes=max_body_bytes,
        trust_code=trust_bundle,
        reload_on_sighup=True,
        ann=ann,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and key is None:
        typer.echo(
            f"warning: serving on {host} without an API key: anyone who can reach it can query it", err=True
        )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
