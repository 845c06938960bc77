"""`clamp export`: a PyTorch CLaMP checkpoint -> a model dir of ONNX encoders, checked against PyTorch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from exporter.checkpoint import resolve_checkpoint
from runtime.model.modeldir import MANIFEST_FILE, ModelDirError, verify_model_dir


def _up_to_date(out: Path, source_hash: str, int8: bool) -> bool:
    """Whether `out` is an intact model dir exported from the same checkpoint with the same settings."""
    try:
        manifest = verify_model_dir(out)
    except ModelDirError:
        return False
    same_source = manifest.get("source", {}).get("sha256") == source_hash
    return same_source and ("int8" in manifest["export"]["precisions"]) == int8


def _replace_dir(built: Path, out: Path) -> None:
    """Move a finished model dir into place; an older one is removed only after the new one is complete."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        built.rename(out)
        shutil.rmtree(old)
    else:
        built.rename(out)


@click.command()
@click.option(
    "--model",
    "model_name",
    default="default",
    show_default=True,
    help="A model family (default, clamp-s-512, clamp-s-1024, clamp2, clamp3-c2, clamp3-saas) or a checkpoint "
    "dir (written by `clamp train`, or a CLaMP 2/3 .pth beside its family config.json).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Checkpoint dir: required for clamp-s-* (config.json, pytorch_model.bin, vocab.json, merges.txt) "
    "and for clamp2 / clamp3-* (the released .pth and XLM-R's tokenizer.json).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model dir to write.")
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write int8 graphs for CPU.")
@click.option("--force", is_flag=True, help="Re-export even if --out is up to date with the checkpoint.")
def export(model_name: str, checkpoint: str | None, out: str, int8: bool, force: bool) -> None:
    """Export a CLaMP model to ONNX (fp32, fp16, int8) with parity checks against PyTorch.

    \b
    Examples:
      clamp export --out build/model
      clamp export --model clamp-s-512 --checkpoint ckpt/clamp-small-512 --out build/clamp-s-512
      clamp export --model clamp3-c2 --checkpoint ckpt/clamp3 --out build/clamp3-c2
    """
    from exporter.export import ExportError, build_model_dir
    from exporter.manifest import source_sha256

    try:
        source = resolve_checkpoint(model_name, checkpoint)
        source_hash = source_sha256(source.files())
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise click.ClickException(
            f"{out_dir} exists and is not a model dir; choose another --out or empty it"
        )
    if not force and _up_to_date(out_dir, source_hash, int8):
        click.echo(f"{out_dir} is up to date with {source.directory} (use --force to re-export)")
        return

    from exporter.checkpoint import load_model

    click.echo(f"loading {source.family['name']} from {source.directory}", err=True)
    model, family, tokenizer_json = load_model(model_name, checkpoint)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    click.echo(f"exporting to {out_dir} (fp32, fp16{', int8' if int8 else ''}) and checking parity", err=True)
    record = {"model": str(model_name), "checkpoint": str(source.directory.resolve()), "sha256": source_hash}
    try:
        manifest = build_model_dir(model, family, tokenizer_json, building, record, int8=int8)
        _replace_dir(building, out_dir)
    except ExportError as error:
        raise click.ClickException(str(error)) from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
    click.echo(parity_table(manifest))
    for name, reason in manifest["dropped"].items():
        click.echo(f"dropped {name}: {reason}")
    click.echo(f"wrote {out_dir} (model hash {manifest['model_hash'][:16]})")


def parity_table(manifest: dict) -> str:
    """The parity figures of a manifest as a small markdown table."""
    rows = ["| precision | tower | max abs diff | min cosine |", "|---|---|---|---|"]
    for precision in manifest["export"]["precisions"]:
        for tower, figures in manifest["parity"][precision].items():
            rows.append(
                f"| {precision} | {tower} | {figures['max_abs_diff']:.2e} | {figures['min_cosine']:.7f} |"
            )
    return "\n".join(rows)
