"""The one `clamp` command: a click group whose subcommands live next to the code they drive.

Subcommands are imported only when invoked, so `clamp search` never imports torch and
`clamp --help` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import click

from runtime.model.modeldir import PRECISIONS
from runtime.search.limits import Limit
from runtime.storage.space import disk_full_cause, disk_full_message

# name -> ("module:attribute" of a click command, one-line help for `clamp --help`), in listing order.
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("runtime.cli.query:search", "Text -> music: find tunes matching a description."),
    "similar": ("runtime.cli.query:similar", "Music -> music: tunes similar to a given tune."),
    "classify": ("runtime.cli.query:classify", "Zero-shot: rank label texts for a tune."),
    "query": ("runtime.cli.query:query", "Ad-hoc clamp.py-style queries over a folder or file of keys."),
    "serve": ("runtime.serve.server:serve", "HTTP API and web page over an index."),
    "embed": ("indexer.cli:embed", "Batch-embed ABC corpora into Parquet shards (resumable)."),
    "index": ("indexer.index_cli:index", "Build and inspect HNSW indices over shards."),
    "export": ("exporter.cli:export", "Export a CLaMP checkpoint to an ONNX model dir."),
    "patch": ("runtime.cli.patch:patch", "Show the patches (bar or M3) the model sees for each tune."),
    "train": ("training.cli:train", "Train the default model on the music21 ABC collections."),
    "eval": ("training.cli:evaluate", "Evaluate a checkpoint or exported model dir on the held-out split."),
}


def precision_option(help: str) -> Callable:
    """`--precision`: which exported graphs the encoder runs (runtime.model.encoder.resolve_precisions)."""
    return click.option(
        "--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True, help=help
    )


class InRange(click.ParamType):
    """A click number type checked by a shared Limit: the CLI refuses what HTTP refuses, in the same words."""

    def __init__(self, limit: Limit, number: type = int):
        self.limit = limit
        self.number = number
        self.name = number.__name__

    def convert(self, value, param, ctx):
        try:
            number = self.number(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a valid {self.number.__name__}", param, ctx)
        try:
            return self.limit.check(number)
        except ValueError as err:
            self.fail(str(err), param, ctx)


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_commands) + sorted(super().list_commands(ctx))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        module_name, attr = self.lazy_commands[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; a full disk, in any of them, ends in one line saying what ran out (exit 1)."""
        try:
            return super().invoke(ctx)
        except Exception as err:  # an OSError, SQLite's "database or disk is full", or one wrapped
            if disk_full_cause(err) is None:
                raise
            raise click.ClickException(disk_full_message(err)) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands from the table, without importing them (keeps `--help` instant and torch-free)."""
        rows = [(name, short) for name, (_, short) in self.lazy_commands.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clamp-index")
def main() -> None:
    """clamp-index: cross-modal symbolic music retrieval with CLaMP.

    \b
    Typical flow:
      clamp export --out build/model            # model dir (ONNX encoders)
      clamp embed corpus/ --model build/model --out build/shards
      clamp index build build/shards --out build/index
      clamp search "a lively jig in D major" --index build/index
    """
