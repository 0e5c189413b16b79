"""The `ssdtrt` command: a Typer app assembled from one module per command group.

Library code raises `SSDTRTError`; here (and only here) it becomes one line on stderr and an exit code.
`--debug` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

#: Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = ("train", "evaluate", "weights", "export", "compare", "lint", "detect", "build_engine", "demo", "bench", "serve", "sensitivity")


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="ssdtrt",
        help="SSD300 from PyTorch to a deployed, measured engine: train, export ONNX (FP32/FP16/INT8), build "
        "TensorRT/OpenVINO engines, detect, and check parity, mAP and latency at every step.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    ) -> None:
        """ssdtrt: SSD300 deployment toolchain."""

    for name in COMMAND_MODULES:
        importlib.import_module(f"ssdtrt.cli.{name}").register(app)
    return app


def _one_line_warnings() -> None:
    """ssdtrt's own warnings (e.g. an unverifiable older manifest) as one `warning: ...` line, like errors."""
    import warnings

    from ssdtrt.core.manifest import UnverifiedArtifactWarning

    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):  # noqa: ANN001, ANN202 - the warnings hook signature
        if issubclass(category, UnverifiedArtifactWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (0 ok, 1 failure, 2 usage / missing backend)."""
    from ssdtrt.core.errors import SSDTRTError

    try:
        import click
    except ImportError:  # typer >= 0.29 vendors click instead of depending on it
        from typer import _click as click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # accept --debug anywhere, not only before the command
        args = ["--debug", *[a for a in args if a != "--debug"]]
    app = build_app()
    _one_line_warnings()
    try:
        result = app(args=args, prog_name="ssdtrt", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except SSDTRTError as err:
        if debug:
            raise
        typer.secho(f"error: {err}", fg="red", err=True)
        code = err.exit_code
    except OSError as err:  # unreadable / unwritable paths the library did not wrap
        if debug:
            raise
        typer.secho(f"error: {err}", fg="red", err=True)
        code = 1
    except typer.Exit as err:
        code = err.exit_code
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except typer.Abort:
        typer.secho("aborted", fg="red", err=True)
        code = 130
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="red", err=True)
        code = 130
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()

