"""The ``affectkit`` command line, a thin layer over the library: each command parses its options, calls one library
function with reporting to the console, and prints what it returns. Commands live by concern: ``data``
(make-demo-data, analyze), ``train`` (train, run, tune, benchmark, demo, evaluate, calibrate, config, weights),
``infer`` (predict, export, pretrained, serve), ``multimodal`` (fuse, fuse-predict, make-windows) and ``temporal``
(temporal, temporal-predict); the heavy libraries are imported when a command runs."""

# Each module adds its commands to the app.
from affectkit.cli import data, infer, multimodal, temporal, train  # noqa: F401
from affectkit.cli.common import app, build_config, main

# Typer's command list keeps a docstring's line breaks in rich mode; each command's summary is its first paragraph
# on one line, as the command's own help page shows it.
for command in app.registered_commands:
    if command.short_help is None and command.callback is not None and command.callback.__doc__:
        command.short_help = " ".join(command.callback.__doc__.split("\n\n")[0].split())

__all__ = ["app", "build_config", "main"]
