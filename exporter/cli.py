"""`clamp export`: a PyTorch CLaMP checkpoint -> a model dir of ONNX encoders, checked against PyTorch."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from exporter.checkpoint import CheckpointSource, resolve_checkpoint
from runtime.model.modeldir import INT8_SCHEME, ModelDirError, verify_model_dir
from runtime.storage.dirs import MODEL, OutDirError, building_dir, prepare_out_dir, replace_dir
from runtime.storage.lock import DirLockedError, exclusive


def _up_to_date(out: Path, source_hash: str, int8: bool) -> bool:
    """Whether `out` is an intact model dir exported from the same checkpoint with the same settings."""
    try:
        manifest = verify_model_dir(out)
    except ModelDirError:
        return False
    same_source = manifest.get("source", {}).get("sha256") == source_hash
    scheme = manifest["export"].get("int8_scheme") if "int8" in manifest["export"]["precisions"] else None
    return same_source and scheme == (INT8_SCHEME if int8 else None)


@click.command()
@click.option(
    "--model",
    "model_name",
    default="default",
    show_default=True,
    help="A model family (default, clamp-s-512, clamp-s-1024, clamp2, clamp3-c2, clamp3-saas) or a "
    "checkpoint dir (written by `clamp train`, or a CLaMP 2/3 .pth beside its family config.json).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Checkpoint dir: required for clamp-s-* (config.json, pytorch_model.bin, vocab.json, merges.txt) "
    "and for clamp2 / clamp3-* (the released .pth and XLM-R's tokenizer.json).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Model dir to write: missing, empty, or a model dir to replace (anything else is refused).",
)
@click.option(
    "--int8/--no-int8",
    default=True,
    show_default=True,
    help="Also write int8 graphs for CPU: static scales calibrated on music21's train tunes, gated on "
    "its eval tunes (needs music21).",
)
@click.option("--force", is_flag=True, help="Re-export even if --out is up to date with the checkpoint.")
def export(model_name: str, checkpoint: str | None, out: str, int8: bool, force: bool) -> None:
    """Export a CLaMP model to ONNX (fp32, fp16, int8) with parity checks against PyTorch.

    \b
    Examples:
      clamp export --out build/model
      clamp export --model clamp-s-512 --checkpoint ckpt/clamp-small-512 --out build/clamp-s-512
      clamp export --model clamp3-c2 --checkpoint ckpt/clamp3 --out build/clamp3-c2
    """
    from exporter.export import ExportError
    from exporter.manifest import source_sha256

    try:
        source = resolve_checkpoint(model_name, checkpoint)
        source_hash = source_sha256(source.files())
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    out_dir = Path(out)
    try:
        with exclusive(out_dir, "clamp export"):
            prepare_out_dir(out_dir, MODEL, replacing=True)
            if not force and _up_to_date(out_dir, source_hash, int8):
                click.echo(f"{out_dir} is up to date with {source.directory} (use --force to re-export)")
                return
            manifest = _export(model_name, checkpoint, source, source_hash, out_dir, int8)
    except (ExportError, OutDirError, DirLockedError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(parity_table(manifest))
    for name, reason in manifest["dropped"].items():
        click.echo(f"dropped {name}: {reason}")
    click.echo(f"wrote {out_dir} (model hash {manifest['model_hash'][:16]})")


def _export(
    model_name: str,
    checkpoint: str | None,
    source: CheckpointSource,
    source_hash: str,
    out_dir: Path,
    int8: bool,
) -> dict:
    """Export into a dir built beside `out_dir`, then swap it in (the caller holds the lock)."""
    from exporter.checkpoint import load_model
    from exporter.export import build_model_dir

    click.echo(f"loading {source.family['name']} from {source.directory}", err=True)
    model, family, tokenizer_json = load_model(model_name, checkpoint)
    building = building_dir(out_dir)
    click.echo(f"exporting to {out_dir} (fp32, fp16{', int8' if int8 else ''}) and checking parity", err=True)
    record = {"model": str(model_name), "checkpoint": str(source.directory.resolve()), "sha256": source_hash}
    try:
        manifest = build_model_dir(model, family, tokenizer_json, building, record, int8=int8)
        replace_dir(building, out_dir, MODEL)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return manifest


def parity_table(manifest: dict) -> str:
    """The parity figures of a manifest as a small markdown table."""
    rows = ["| precision | tower | max abs diff | min cosine |", "|---|---|---|---|"]
    for precision in manifest["export"]["precisions"]:
        for tower, figures in manifest["parity"][precision].items():
            rows.append(
                f"| {precision} | {tower} | {figures['max_abs_diff']:.2e} | {figures['min_cosine']:.7f} |"
            )
    return "\n".join(rows)
