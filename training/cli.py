"""`clamp train` and `clamp eval`: train the default model from scratch, and measure a checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

# On a shared CPU, OpenMP threads that spin while waiting made training steps 5x slower; must be set
# before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from runtime.cli import precision_option
from runtime.model.families import load_family
from runtime.music.profiles import PROFILES
from runtime.storage.dirs import CHECKPOINT, OutDirError, prepare_out_dir
from runtime.storage.lock import DirLockedError, exclusive
from training.evaluate import evaluate as run_evaluation
from training.evaluate import markdown_table, write_into_card
from training.train import TrainConfig
from training.train import train as run_training

METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"


BASELINE = Path("models/default-v1")  # the previous default model, kept to be compared with


def _report(results: list[dict], checkpoint_dir: Path | None, update_card: bool) -> None:
    """Print the tables (models side by side); with a dir, write the first model's metrics and card."""
    table = markdown_table(results)
    click.echo(table)
    if checkpoint_dir is None:
        return
    (checkpoint_dir / METRICS_FILE).write_text(json.dumps(results[0], indent=2) + "\n")
    card = checkpoint_dir / CARD_FILE
    if update_card and card.is_file():
        write_into_card(card, table)
        click.echo(f"metrics written into {card}")


def _with_baseline(checkpoint: Path, device: str) -> list[dict]:
    """The checkpoint's metrics, then the previous default model's beside them when it is here."""
    runs = [run_evaluation(checkpoint, device=device)]
    if BASELINE.is_dir() and checkpoint.resolve() != BASELINE.resolve():
        runs.append(run_evaluation(BASELINE, device=device))
    return runs


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("models/default"),
    show_default=True,
    help="Checkpoint dir to write (model.safetensors, config.json, training.json, metrics.json).",
)
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True)
@click.option(
    "--pretrain-epochs",
    type=int,
    default=TrainConfig.pretrain_epochs,
    show_default=True,
    help="Epochs of masked-patch pre-training of the music tower before the contrastive epochs (0: none).",
)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option(
    "--lr", type=float, default=TrainConfig.lr, show_default=True, help="Peak learning rate (AdamW)."
)
@click.option(
    "--variants",
    type=int,
    default=TrainConfig.variants,
    show_default=True,
    help="Synthesised texts per tune (one is drawn per tune and epoch).",
)
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option(
    "--device", default="auto", show_default=True, help="auto (cuda if available), cpu, cuda, cuda:1..."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=TrainConfig.cache_dir,
    show_default=True,
    help="Where the frozen text layers' outputs for the training texts are cached.",
)
@click.option(
    "--limit", type=int, default=None, help="Train on the first N training tunes only (smoke runs)."
)
@click.option(
    "--music-layers",
    type=int,
    default=None,
    help="Layers of the music tower [default: the family's]; a model choice to compare, not to ship.",
)
@click.option(
    "--music-music-weight",
    type=float,
    default=TrainConfig.music_music_weight,
    show_default=True,
    help="Weight of the music-music InfoNCE term between two views of a tune (0: the views as "
    "augmentation only).",
)
@click.option(
    "--classical/--no-classical",
    default=TrainConfig.classical,
    show_default=True,
    help="Also train on music21's classical scores.",
)
@click.option(
    "--text-tuned-layers",
    type=click.IntRange(0, load_family(TrainConfig.family)["text"]["num_hidden_layers"]),
    default=TrainConfig.text_tuned_layers,
    show_default=True,
    help=f"Top layers of the pretrained text tower that train too, at {TrainConfig.text_lr_scale:g} x --lr "
    "(0: LiT, it stays frozen); the checkpoint then stores those layers.",
)
@click.option(
    "--eval/--no-eval",
    "then_evaluate",
    default=True,
    show_default=True,
    help="Evaluate on the held-out split afterwards (metrics.json, and the model card's table).",
)
def train(
    out: Path,
    epochs: int,
    pretrain_epochs: int,
    batch_size: int,
    lr: float,
    variants: int,
    seed: int,
    device: str,
    cache_dir: Path,
    limit: int | None,
    music_layers: int | None,
    music_music_weight: float,
    classical: bool,
    text_tuned_layers: int,
    then_evaluate: bool,
) -> None:
    """Train the default model from scratch on music21's folk tunes and classical scores (LiT: frozen
    all-MiniLM-L6-v2), with the notation variants and MusicXML/MIDI round trips as views of each tune.

    \b
    Reproduces models/default, seeded. Cached steps first, each with a progress bar: the classical
    scores' conversion (~25 min of 2 busy cores once), the round trips of 3,100 tunes (~50 min once),
    the frozen text tower's features (~12 min once); then training (~48 min on a busy 2-core CPU):
      clamp train --out models/default
    """
    config = TrainConfig(
        out=out,
        epochs=epochs,
        pretrain_epochs=pretrain_epochs,
        batch_size=batch_size,
        lr=lr,
        variants=variants,
        seed=seed,
        device=device,
        cache_dir=cache_dir,
        limit=limit,
        music_overrides={"num_hidden_layers": music_layers} if music_layers else {},
        music_music_weight=music_music_weight,
        classical=classical,
        text_tuned_layers=text_tuned_layers,
    )
    try:
        with exclusive(out, "clamp train"):
            prepare_out_dir(out, CHECKPOINT, replacing=False)  # before the hours of training, not after
            summary = run_training(config)
            click.echo(
                f"trained {summary['train_tunes']} tunes in {summary['seconds']:.0f} s; checkpoint in {out}"
            )
            if then_evaluate:
                _report(_with_baseline(out, device), out, update_card=True)
    except (OutDirError, DirLockedError) as err:
        raise click.ClickException(str(err)) from err


@click.command()
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    help="Checkpoint dir (ours or official) or model name; repeat to compare models side by side "
    f"[default: models/default, and {BASELINE} beside it].",
)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Evaluate this exported ONNX model dir (what the runtime serves) instead of --checkpoint.",
)
@precision_option(
    "With --model: which exported graphs to evaluate, on the CPU (auto: what the runtime uses there)."
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help="Patch the music this way instead of as the checkpoint's family does (what a model reads into "
    "notation: e.g. v1 given the canonical spelling).",
)
@click.option(
    "--write/--no-write",
    default=False,
    show_default=True,
    help="Also write metrics.json and the model card's metrics table into the checkpoint dir.",
)
def evaluate(
    checkpoints: tuple[str, ...],
    device: str,
    model_dir: Path | None,
    precision: str,
    profile: str | None,
    write: bool,
) -> None:
    """Metrics on music never trained on: text->music retrieval, zero-shot classification per labelset,
    invariance to notation (variants and MusicXML/MIDI round trips), and leave-one-collection-out."""
    if write and model_dir is not None:
        raise click.UsageError("--write updates a checkpoint's model card; it cannot be used with --model")
    if model_dir is not None:
        results = [run_evaluation(model_dir=model_dir, precision=precision)]
    elif checkpoints:
        results = [run_evaluation(c, device=device, profile=profile) for c in checkpoints]
    else:
        results = _with_baseline(Path("models/default"), device)
    directory = Path(checkpoints[0] if checkpoints else "models/default")
    _report(results, directory if write and directory.is_dir() else None, update_card=write)
