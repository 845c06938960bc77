"""What can be said about a tune in English: its metadata (often German, in Essen) mapped to plain words,
plus simple analysis of the melody. Text synthesis and zero-shot labels both start from these facts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from training.analysis import FOLK_MODES, MAJOR_MINOR, Key, melody_stats, quarter_bpm, tune_key
from training.corpus import CorpusTune

# Per collection (top folder, or folder/file stem): (book name, default region adjective, default noun).
COLLECTIONS: dict[str, tuple[str, str | None, str]] = {
    "essenFolksong": ("the Essen folk song collection", None, "folk song"),
    "oneills1850": ("O'Neill's Music of Ireland", "Irish", "tune"),
    "ryansMammoth": ("Ryan's Mammoth Collection", "Irish", "tune"),
    "airdsAirs": ("Aird's Selection of Airs", "Scottish", "tune"),
    "miscFolk/americanfifeopus": ("Colonial American fife music", "American", "tune"),
    "miscFolk/northumbrianminstrelsyopus": ("Northumbrian Minstrelsy", "English", "tune"),
    "nottingham-dataset": ("the Nottingham Music Database", "English", "tune"),
    "josquin": ("Josquin des Prez's chansons", None, "Renaissance chanson"),
}
# Country words of Essen's O: field (German, ASCII-folded) and English words of C:/O: -> region adjective.
REGIONS: dict[str, str] = {
    "deutschland": "German", "china": "Chinese", "ostasien": "East Asian", "luxemburg": "Luxembourgish",
    "lothringen": "Lorraine", "elsass": "Alsatian", "oesterreich": "Austrian", "tirol": "Austrian",
    "steiermark": "Austrian", "schweiz": "Swiss", "niederlande": "Dutch", "flaem": "Flemish",
    "flamen": "Flemish", "brabant": "Flemish", "belgien": "Belgian", "irland": "Irish", "udssr": "Russian",
    "russland": "Russian", "ungarn": "Hungarian", "tschechoslowakei": "Czech", "jugoslawien": "Yugoslav",
    "rumaenien": "Romanian", "polen": "Polish", "frankreich": "French", "schweden": "Swedish",
    "daenemark": "Danish", "norwegen": "Norwegian", "finnland": "Finnish", "italien": "Italian",
    "griechenland": "Greek", "amerika": "American", "england": "English", "irish": "Irish",
    "scotch": "Scottish", "scottish": "Scottish", "welsh": "Welsh", "english": "English",
}  # fmt: skip
# Stems of Essen's German song genres (R:) and the English genre each names; the first in R: is primary.
GENRES: dict[str, str] = {
    "liebe": "love song", "ballade": "ballad", "romanze": "ballad", "kinder": "children's song",
    "wiegen": "lullaby", "geistlich": "religious song", "religi": "religious song",
    "soldaten": "soldiers' song", "kriegs": "war song", "helden": "heroic song", "trink": "drinking song",
    "zech": "drinking song", "tanz": "dance song", "reigen": "dance song", "hochzeit": "wedding song",
    "ehestand": "wedding song", "abschied": "farewell song", "jaeger": "hunting song",
    "wander": "walking song", "scherz": "humorous song", "lustig": "humorous song",
    "beruf": "work song", "arbeit": "work song", "haozi": "work song", "klage": "lament",
    "erzaehl": "narrative song", "sage": "legend song", "maerchen": "fairy-tale song",
    "vaterland": "patriotic song", "politisch": "political song", "studenten": "student song",
    "weihnacht": "Christmas song", "kilt": "courting song", "xiaodiao": "ditty",
    "shange": "mountain song",
}  # fmt: skip
# More of Essen's R: words (each >= 5 times in the corpus untranslated by GENRES): trades, occasions and
# subjects. They follow GENRES' words, so a song GENRES names keeps its primary genre.
MORE_GENRES: dict[str, str] = {
    "schlaflied": "lullaby", "brautlied": "bridal song", "brautwerbung": "courting song",
    "werbung": "courting song", "brautsuche": "courting song", "jagd": "hunting song",
    "jagen": "hunting song",
    "spott": "mocking song", "handwerk": "craftsmen's song", "bauern": "peasants' song",
    "bergmann": "miners' song", "hirten": "shepherds' song", "schaefer": "shepherds' song",
    "seemann": "sailors' song", "matrosen": "sailors' song", "schiffer": "boatmen's song",
    "fuhrmann": "carters' song", "nachtwaechter": "night watchman's song", "schneider": "tailors' song",
    "trauer": "mourning song", "graebnis": "funeral song", "trost": "song of consolation",
    "legende": "legend song", "historisch": "historical song", "heimat": "homeland song",
    "heimweh": "homesickness song", "jugend": "youth song", "gesellig": "convivial song",
    "stimmung": "lyrical song", "freude": "song of joy", "sehnsucht": "song of longing",
    "moral": "moral song", "natur": "nature song", "untreue": "song of infidelity",
    "treue": "song of faithfulness", "raetsel": "riddle song", "wettlied": "contest song", "jodel": "yodel",
    "jodler": "yodel", "jahreszeit": "seasonal song", "fruehling": "spring song", "sommer": "summer song",
    "herbst": "autumn song", "winter": "winter song", "tageszeit": "time-of-day song",
    "abend": "evening song", "tagelied": "dawn song", "brauchtum": "custom song", "ansinge": "custom song",
    "kirchenfest": "church feast song", "dreikoenig": "Epiphany song", "heiligedreikoenige": "Epiphany song",
    "neujahr": "New Year song", "silvester": "New Year's Eve song", "wuge": "dance song",
    "qingge": "love song",
}  # fmt: skip
# Tune types (R:, or the end of a title) -> canonical name. Longer names are matched first.
TUNE_TYPES: dict[str, str] = {
    "double jig": "jig", "single jig": "jig", "slip jig": "slip jig", "slipjig": "slip jig", "jig": "jig",
    "reel": "reel", "hornpipe": "hornpipe", "strathspey": "strathspey", "clog": "clog",
    "highland fling": "highland fling", "fling": "highland fling", "polka": "polka", "waltz": "waltz",
    "quick step": "march", "quickstep": "march", "march": "march", "air": "air", "slide": "slide",
    "set dance": "set dance", "minuet": "minuet", "menuet": "minuet", "gavotte": "gavotte",
    "cotillon": "cotillon", "cottilon": "cotillon", "allemanda": "allemande", "allemande": "allemande",
    "country dance": "country dance", "planxty": "planxty", "lament": "lament", "walkaround": "walkaround",
}  # fmt: skip
TEMPO_WORDS: dict[str, str] = {
    "very slow": "slow", "slow": "slow", "plaintive": "slow", "tenderly": "slow", "moderate": "moderate",
    "lively": "lively", "spirited": "lively", "with spirit": "lively", "animated": "lively",
    "brisk": "lively", "quick": "fast", "fast": "fast", "rapid": "fast",
}  # fmt: skip
METERS = {"C": "4/4", "C|": "2/2"}


def _words_pattern(words: dict[str, str], plural: str = "") -> re.Pattern[str]:
    """A regex matching any of the words (longest first), as whole words."""
    alternation = "|".join(sorted(map(re.escape, words), key=len, reverse=True))
    return re.compile(rf"\b({alternation}){plural}\b")


_TYPE_PATTERN = _words_pattern(TUNE_TYPES, plural="s?")
# Stems are matched without spaces or hyphens, longest first, without overlaps ("untreue" is not "treue").
_GENRE_PATTERNS = [
    re.compile("|".join(sorted(map(re.escape, t), key=len, reverse=True))) for t in (GENRES, MORE_GENRES)
]
_TEMPO_PATTERN = _words_pattern(TEMPO_WORDS)
# Umlauts, also as Essen's files often spell them: DOS code page 437 bytes read as Latin-1 ("erz\x84hlend").
_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "\x84": "ae", "\x94": "oe", "\x81": "ue", "\x8e": "ae"}
    | {"\x99": "oe", "\x9a": "ue", "á": "ss"}
)


@dataclass(frozen=True)
class TuneFacts:
    """Plain-English facts about one tune; None where unknown."""

    title: str | None
    noun: str  # what the tune is: its type ("reel"), its genre ("love song") or its kind ("folk song")
    tune_type: str | None
    genres: tuple[str, ...]
    region: str | None
    key: Key | None
    meter: str | None
    tempo: str | None
    range_words: str | None
    density_words: str | None
    length_words: str | None
    composer: str | None
    collection: str
    kind: str  # what its collection holds: "tune", "folk song", "Renaissance chanson"

    def labels(self) -> dict[str, str]:
        """Ground truth for zero-shot classification, by labelset name (runtime/search/labelsets.json)."""
        tune_type = self.tune_type or ("song" if self.kind.endswith("song") else None)
        found = {
            "tune-type": tune_type,
            "meter": self.meter,
            "mode": self.key.mode if self.key else None,
            "region": self.region,
            "genre": self.genres[0] if self.genres else None,
        }
        return {name: label for name, label in found.items() if label}


def _fold(text: str) -> str:
    return text.lower().translate(_FOLD)


def _first_match(text: str, table: dict[str, str]) -> str | None:
    hits = [(pos, value) for stem, value in table.items() if (pos := text.find(stem)) >= 0]
    return min(hits)[1] if hits else None


def region_of(origin: str | None, composer: str | None, default: str | None) -> str | None:
    """Region adjective from O: (first country named), else an English region word in C:, else the default."""
    for text in (origin, composer):
        if text and (found := _first_match(_fold(text), REGIONS)):
            return found
    return default


def genres_of(rhythm: str | None) -> tuple[str, ...]:
    """English genres named in an Essen R: field, GENRES' in the order they appear, then MORE_GENRES'."""
    if not rhythm:
        return ()
    text = _fold(rhythm).replace(" ", "").replace("-", "")
    hits = [
        (table, hit.group(0))
        for table, p in zip((GENRES, MORE_GENRES), _GENRE_PATTERNS, strict=True)
        for hit in p.finditer(text)
    ]
    return tuple(dict.fromkeys(table[stem] for table, stem in hits))


def tune_type_of(rhythm: str | None, title: str | None) -> str | None:
    """The tune type from R:, or else the last tune-type word of the title ("Lady Ann's Reel" -> reel)."""
    for text in (rhythm, title):
        if text and (hits := _TYPE_PATTERN.findall(text.lower())):
            return TUNE_TYPES[hits[0] if text is rhythm else hits[-1]]
    return None


def clean_title(title: str | None) -> str | None:
    """The first title, without quotes, a trailing full stop or a trailing " -- Strathspey"-like type."""
    if not title:
        return None
    first = title.split(" / ")[0].strip().strip('"').strip()
    suffix = re.search(r"\s+-+\s*([^-]+)$", first)
    if suffix and _TYPE_PATTERN.fullmatch(suffix.group(1).strip(" .").lower()):
        first = first[: suffix.start()]
    return first.rstrip(".").strip() or None


def tempo_of(tempo_field: str | None, notes: str | None) -> str | None:
    """slow | moderate | lively | fast, from a Q: metronome mark or a tempo word in N:."""
    bpm = quarter_bpm(tempo_field) if tempo_field else None
    if bpm:
        return "slow" if bpm < 80 else "moderate" if bpm < 112 else "lively" if bpm < 150 else "fast"
    hit = _TEMPO_PATTERN.search(notes.lower()) if notes else None
    return TEMPO_WORDS[hit.group(1)] if hit else None


def meter_of(meter_field: str | None) -> str | None:
    """Meter as "6/8"; C -> 4/4, C| -> 2/2, free or unknown -> "free"."""
    if not meter_field:
        return None
    value = meter_field.split("%")[0].strip().rstrip("]").strip()
    value = METERS.get(value, value)
    return value if re.fullmatch(r"\d+/\d+", value) else "free"


def _quarters_per_bar(meter: str | None) -> float | None:
    if not meter or meter == "free":
        return None
    num, den = (int(x) for x in meter.split("/"))
    return 4 * num / den if den else None


def _bucket(value: float | None, low: tuple[str, float], high: tuple[str, float]) -> str | None:
    """Words for a figure that is unusually low (below low's bound) or high (above high's), else None."""
    if value is None:
        return None
    return low[0] if value < low[1] else high[0] if value > high[1] else None


def composer_of(composer: str | None) -> str | None:
    """A composer name from C:, unless the field only names a region or a collector."""
    if not composer:
        return None
    name = composer.split(" / ")[0].replace("\\footnotemark", "").strip(' "().')
    name = re.sub(r"^by\s+", "", name, flags=re.IGNORECASE)
    lowered = name.lower()
    not_a_composer = re.search(r"\d|collect|o'neill|tune|\bair\b|india", lowered)
    return None if not name or not_a_composer or _first_match(lowered, REGIONS) else name


def collection_info(tune: CorpusTune) -> tuple[str, str | None, str]:
    """(book name, default region, default noun) of the collection a tune comes from."""
    stem = tune.source.rsplit(".", 1)[0]
    return COLLECTIONS.get(stem) or COLLECTIONS.get(tune.collection) or (tune.collection, None, "tune")


def describe(tune: CorpusTune) -> TuneFacts:
    """Everything text synthesis may say about a tune."""
    meta = tune.meta
    book, default_region, default_noun = collection_info(tune)
    is_song_collection = default_noun != "tune"
    tune_type = None if is_song_collection else tune_type_of(meta.get("rhythm"), meta.get("title"))
    meter = meter_of(meta.get("meter"))
    if tune_type == "jig" and meter == "9/8":
        tune_type = "slip jig"
    genres = genres_of(meta.get("rhythm")) if is_song_collection else ()
    region = region_of(meta.get("origin"), meta.get("composer"), default_region)
    stats = melody_stats(tune.abc)
    quarters = _quarters_per_bar(meter)
    density = stats.n_notes / (stats.n_bars * quarters) if quarters and stats.n_bars else None
    # Songs (Essen) carry no reliable mode in K:, and a final on the 5th is rarely mixolydian there.
    modes = MAJOR_MINOR if is_song_collection else FOLK_MODES
    return TuneFacts(
        title=clean_title(meta.get("title")),
        noun=tune_type or (genres[0] if genres else default_noun),
        tune_type=tune_type,
        genres=genres,
        region=region,
        key=tune_key(meta.get("key", ""), stats.final_letter, modes),
        meter=meter,
        tempo=tempo_of(meta.get("tempo"), meta.get("notes")),
        range_words=_bucket(stats.range_semitones, ("a narrow range", 9), ("a wide range", 19)),
        density_words=_bucket(density, ("long notes", 1.1), ("many quick notes", 2.2)),
        length_words=_bucket(stats.n_bars, ("short", 12), ("long", 48)),
        composer=composer_of(meta.get("composer")),
        collection=book,
        kind=default_noun,
    )
