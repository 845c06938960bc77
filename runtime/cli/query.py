"""`clamp search | similar | classify | query`: the CLaMP query kinds from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from runtime.cli import InRange
from runtime.music.profiles import Profile
from runtime.search.calibration import CHANCE_Z, no_better_than_chance
from runtime.search.filters import FILTER_HELP
from runtime.search.hits import Hit, hits_as_dicts, softmax_probs
from runtime.search.hybrid import MODES
from runtime.search.index import Index, index_model, missing_model_error, read_manifest, resolve_model_dir
from runtime.search.keys import (
    DEFAULT_TEMPLATE,
    Embedder,
    FeatureCache,
    KeySet,
    label_set,
    label_sets,
    music_keys,
    read_music,
    text_keys_file,
)
from runtime.search.keys import classify as classify_music
from runtime.search.limits import TOP_N, TUNE, K, require_text

TABLE_FIELDS = ("title", "rhythm", "meter", "key", "origin")  # shown when the hits carry them


@contextmanager
def user_errors() -> Iterator[None]:
    """Report the errors a user can fix (bad path, filter, model) as one line, not a traceback."""
    try:
        yield
    except (ValueError, KeyError, OSError) as err:
        raise click.ClickException(str(err.args[0]) if isinstance(err, KeyError) else str(err)) from err


def format_table(
    hits: list[Hit], key: str = "id", with_prob: bool = False, score_name: str = "cosine"
) -> str:
    """Hits as an aligned text table, best first: rank, score, z, found by, metadata, id.

    `key` heads the last column: what the hits' ids are (item ids, or classify's labels). `with_prob`
    adds clamp.py's softmax over these hits (scale e), which means something only where they are
    every candidate (zero-shot labels), not for the top k of an index.
    """
    if not hits:
        return "no results"
    fields = [f for f in TABLE_FIELDS if any(h.metadata.get(f) for h in hits)]
    columns = {
        "#": lambda rank, hit, prob: str(rank),
        score_name: lambda rank, hit, prob: f"{hit.score:.4f}",
        **({"prob": lambda rank, hit, prob: f"{prob:.1%}"} if with_prob else {}),
        **({"z": lambda rank, hit, prob: f"{hit.z:.1f}"} if any(h.z is not None for h in hits) else {}),
        **({"found": lambda rank, hit, _: "+".join(hit.found_by)} if any(h.found_by for h in hits) else {}),
        **{f: (lambda rank, hit, prob, f=f: _cell(hit.metadata.get(f))) for f in fields},
        key: lambda rank, hit, prob: hit.id,
    }
    probs = softmax_probs([h.score for h in hits])
    header = list(columns)
    rows = [
        [cell(rank, hit, prob) for cell in columns.values()]
        for rank, (hit, prob) in enumerate(zip(hits, probs, strict=True), 1)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    abcs = [f"\n--- {rank}. {hit.id}\n{hit.abc.rstrip()}" for rank, hit in enumerate(hits, 1) if hit.abc]
    return "\n".join(lines + abcs)


def _cell(value: Any, width: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def emit(
    query: str,
    hits: list[Hit],
    as_json: bool,
    key: str = "id",
    *,
    with_prob: bool = False,
    mode: str | None = None,
) -> None:
    """Print hits as JSON or a table; for text searches (`mode` given) say when they are only chance."""
    chance = no_better_than_chance(hits) if mode else None
    if as_json:
        answer: dict[str, Any] = {"query": query}
        if mode:
            answer |= {"mode": mode, "no_match_better_than_chance": chance}
        answer["results"] = hits_as_dicts(hits, with_prob)
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    if chance:
        best = max(h.z for h in hits if h.z is not None)
        click.echo(
            f"no match better than chance (best z={best:.1f}, under {CHANCE_Z:g}: unrelated texts score as "
            "high on this index); the nearest tunes anyway:"
        )
    click.echo(format_table(hits, key, with_prob, "bm25" if mode == "keyword" else "cosine"))


def read_music_arg(music: str, tune: int, profile: Profile | None = None) -> str:
    """A tune from a file path (read as the model's `profile` reads scores), or from stdin for '-'."""
    if music == "-":
        return read_music(sys.stdin.read() + "\n", tune)  # the newline marks it as ABC text, not a path
    return read_music(Path(music), tune, profile)


def read_text_arg(text: str) -> str:
    """A text query: the string itself, the contents of a file it names (as clamp.py's), or stdin for '-'."""
    if text == "-":
        return sys.stdin.read()
    return Path(text).read_text() if "\n" not in text and Path(text).is_file() else text


def open_encoder(model_dir: str | None, index_dir: str | None = None) -> Embedder:
    """The model to encode with: --model, else --index's own model (a --model is checked against it)."""
    if index_dir is None:
        from runtime.model.encoder import Encoder

        return Encoder.open(resolve_model_dir(model_dir))
    directory = Path(index_dir)
    manifest = read_manifest(directory)
    encoder = index_model(directory, manifest, model_dir)
    if encoder is None:
        raise missing_model_error(directory, manifest)
    return encoder


def index_options(command: Callable) -> Callable:
    """Options shared by the commands that query an index."""
    for option in reversed(
        [
            click.option(
                "--index",
                "index_dir",
                required=True,
                type=click.Path(exists=True, file_okay=False),
                help="Index dir (from `clamp index build`).",
            ),
            click.option(
                "-k",
                "k",
                type=InRange(K),
                default=10,
                show_default=True,
                help=f"Number of results (1..{K.high:g}).",
            ),
            click.option("--filter", "filter_text", default=None, help=f"Metadata filter: {FILTER_HELP}."),
            click.option(
                "--exact", is_flag=True, help="Score every item (brute force) instead of walking the graph."
            ),
            click.option("--abc", "with_abc", is_flag=True, help="Also print each result's ABC."),
            model_option,
            click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
        ]
    ):
        command = option(command)
    return command


model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False),
    help="Model dir [default: the index's model if any, else $CLAMP_MODEL, else build/model].",
)


model_of_index_option = click.option(
    "--index",
    "index_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Encode with this index's model (the one it was built with); --model must then be that model.",
)


tune_option = click.option(
    "--tune",
    type=InRange(TUNE),
    default=0,
    show_default=True,
    help="Which tune of a multi-tune file (0-based).",
)


@click.command()
@click.argument("text")
@index_options
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help="vector: the model's embedding; keyword: bm25 over titles, composers, places, genres and other "
    "metadata (English words reach German metadata through runtime/search/synonyms.tsv); hybrid: both, "
    "fused [default: hybrid where the index has its keyword table, else vector].",
)
def search(
    text: str,
    index_dir: str,
    k: int,
    filter_text: str | None,
    exact: bool,
    with_abc: bool,
    model_dir: str | None,
    as_json: bool,
    mode: str | None,
) -> None:
    """Text search: tunes of an index that match a TEXT description, their metadata or both.

    Each hit says which side found it (vector, keyword) and its z: its cosine against the best cosines
    of texts unrelated to music on this index. When the best hit is no better than those, it says so.

    \b
    clamp search "a lively jig" --index build/index -k 5
    clamp search "a harp tune by O'Carolan" --index build/index --mode hybrid
    clamp search "slow air" --index build/index --filter 'meter = 3/4 and origin contains Ireland'
    """
    with user_errors():
        require_text(text)  # before the index and model load
        index = Index.open(index_dir, model_dir)
        if mode is None and index.default_mode() == "vector":
            click.echo("note: this index has no keyword table (built before it): vector only", err=True)
        mode = mode or index.default_mode()
        hits = index.search_text(text, k, mode=mode, filter=filter_text, exact=exact, with_abc=with_abc)
    emit(text, hits, as_json, mode=mode)


@click.command()
@click.argument("music")
@tune_option
@index_options
@click.option(
    "--exclude-self/--include-self",
    default=True,
    show_default=True,
    help="Leave out the query tune itself: the item MUSIC names, or items with the same ABC.",
)
def similar(
    music: str,
    tune: int,
    index_dir: str,
    k: int,
    filter_text: str | None,
    exact: bool,
    with_abc: bool,
    model_dir: str | None,
    as_json: bool,
    exclude_self: bool,
) -> None:
    """Similar music: tunes of an index closest to MUSIC: a score (.abc/.mxl/.xml/.mid, - for stdin) or an
    indexed tune's id (as in the results' id column).

    \b
    clamp similar tune.abc --index build/index
    clamp similar collection.abc --tune 3 --index build/index --filter 'rhythm = reel'
    clamp similar 3f2a9c... --index build/index          # more like an indexed tune
    """
    options = {"filter": filter_text, "exact": exact, "with_abc": with_abc, "exclude_self": exclude_self}
    with user_errors():
        index = Index.open(index_dir, model_dir)
        if names_an_item(music, index):
            hits = index.similar_to(music, k, **options)
        else:
            profile = index.require_encoder().profile
            hits = index.search_music(read_music_arg(music, tune, profile), k, **options)
    emit(music, hits, as_json)


def names_an_item(music: str, index: Index | None) -> bool:
    """Whether the MUSIC argument is an indexed tune's id rather than a file (or - for stdin)."""
    if index is None or music == "-" or Path(music).exists():
        return False
    if index.items.label_of(music) is None:
        raise ValueError(f"{music} is neither a score file nor the id of a tune in index {index.directory}")
    return True


def _list_label_sets(ctx: click.Context, _param: click.Parameter, on: bool) -> None:
    if on:
        click.echo(json.dumps(label_sets(), indent=2))
        ctx.exit()


@click.command()
@click.argument("music")
@tune_option
@click.option("--labels", default=None, help='Comma-separated candidate labels, e.g. "jig,reel,hornpipe".')
@click.option(
    "--label-set",
    "label_set_name",
    default=None,
    help="A built-in label set instead of --labels (see --list-label-sets).",
)
@click.option(
    "--template",
    default=None,
    help=f'Prompt around each label [default: "{DEFAULT_TEMPLATE}" or the set\'s].',
)
@click.option(
    "--list-label-sets",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_label_sets,
    help="Print the built-in label sets and exit.",
)
@model_option
@click.option(
    "--index",
    "index_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An index dir: encode with its model, and MUSIC may be one of its tunes' ids [default: no index].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def classify(
    music: str,
    tune: int,
    labels: str | None,
    label_set_name: str | None,
    template: str | None,
    model_dir: str | None,
    index_dir: str | None,
    as_json: bool,
) -> None:
    """Zero-shot classification of the tune in MUSIC (.abc/.mxl/.xml/.mid, - for stdin, or an indexed
    tune's id with --index) among labels.

    Each label becomes a prompt (the template with the label in place of {}); the labels are ranked by
    the cosine of prompt and music.

    \b
    clamp classify tune.abc --labels "jig,reel,hornpipe" --template "This is a {}."
    clamp classify tune.abc --label-set tune-type
    clamp classify tune.abc --label-set tune-type --index build/index
    clamp classify ITEM_ID --index build/index --label-set tune-type
    """
    with user_errors():
        if (labels is None) == (label_set_name is None):
            raise ValueError("give either --labels or --label-set (one of them)")
        set_template, names = (
            label_set(label_set_name) if label_set_name else (DEFAULT_TEMPLATE, labels.split(","))
        )
        index = Index.open(index_dir, model_dir) if index_dir else None
        if names_an_item(music, index):
            hits = index.classify_item(music, names, template or set_template)
        else:
            encoder = index.require_encoder() if index else open_encoder(model_dir)
            music_abc = read_music_arg(music, tune, encoder.profile)
            hits = classify_music(encoder, music_abc, names, template or set_template)
    emit(music, hits, as_json, key="label", with_prob=True)


@click.command()
@click.argument("query_text", metavar="QUERY")
@click.option(
    "--keys",
    "keys_path",
    required=True,
    type=click.Path(exists=True),
    help="Music keys: a score file (.abc/.mxl/.xml/.mid) or a folder of them. Text keys: one key a line.",
)
@click.option(
    "--query-modal",
    type=click.Choice(["text", "music"]),
    default="music",
    show_default=True,
    help="QUERY is text (a string, a file, or - for stdin) or music (a score file, or -).",
)
@click.option(
    "--key-modal",
    type=click.Choice(["text", "music"]),
    default="text",
    show_default=True,
    help="The keys are text lines or music (see --keys).",
)
@click.option(
    "--top-n", type=InRange(TOP_N), default=10, show_default=True, help="Number of results; 0 for all keys."
)
@tune_option
@model_option
@model_of_index_option
@click.option("--no-cache", is_flag=True, help="Do not read or write the key feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def query(
    query_text: str,
    keys_path: str,
    query_modal: str,
    key_modal: str,
    top_n: int,
    tune: int,
    model_dir: str | None,
    index_dir: str | None,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Ad hoc queries, as CLaMP's clamp.py: any query modality against any key modality, no index.

    Key features are cached (in $CLAMP_CACHE_DIR or ~/.cache/clamp-index, by model, file, mtime and
    size), so repeated queries over the same keys only encode the query.

    \b
    clamp query "a green field with a blue sky" --query-modal text --key-modal music --keys tunes/
    clamp query tune.abc --query-modal music --key-modal text --keys composers.txt
    clamp query tune.abc --query-modal music --key-modal music --keys tunes/ --top-n 5
    """
    with user_errors():
        music = query_modal == "music"
        query = "" if music else require_text(read_text_arg(query_text))  # a bad text fails before any model
        encoder = open_encoder(model_dir, index_dir)  # checks the model's files only: no session starts yet
        if music:  # read as the model reads scores, before any encoding
            query = read_music_arg(query_text, tune, encoder.profile)
        root = Path(keys_path)
        cache = None if no_cache else FeatureCache.for_keys(encoder.model_hash, root)
        keys: KeySet = (
            music_keys(encoder, root, cache) if key_modal == "music" else text_keys_file(encoder, root, cache)
        )
        vector = encoder.embed_abc([query]) if music else encoder.embed_texts([query])
        hits = keys.search(vector, top_n)[0]
    emit(query_text, hits, as_json, with_prob=True)
