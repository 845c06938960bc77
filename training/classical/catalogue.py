"""Facts about the composers and published collections of music21's corpus that its files do not carry
(or carry garbled): eras, folder composers, one-off scores, Monteverdi's madrigal books, mass movements."""

from __future__ import annotations

from dataclasses import dataclass

ERAS = ("Medieval", "Renaissance", "Baroque", "Classical", "Romantic", "20th-century")
# Composer (as texts name them) -> era.
COMPOSER_ERAS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Philippe de Vitry", "Jacopo da Bologna", "Giovanni da Firenze", "Piero", "Francesco Landini",
            "Gherardello da Firenze", "Lorenzo da Firenze", "Bartolo da Firenze", "Gratiosus de Padua",
            "Egardus",
            "Philipoctus de Caserta", "Barbitonsoris", "Antonio Zacara da Teramo", "Matteo da Perugia",
            "Johannes Ciconia", "Chipre", "Perrinet", "Guymont", "Johannes Graneti", "D. Luca",
        ),
        "Medieval",
    ),
    "Giovanni Pierluigi da Palestrina": "Renaissance", "Vicente Lusitano": "Renaissance",
    "Claudio Monteverdi": "Renaissance",
    "Johann Sebastian Bach": "Baroque", "George Frideric Handel": "Baroque", "Arcangelo Corelli": "Baroque",
    "Carl Philipp Emanuel Bach": "Classical", "Joseph Haydn": "Classical",
    "Wolfgang Amadeus Mozart": "Classical", "Ludwig van Beethoven": "Classical",
    "Franz Schubert": "Romantic", "Robert Schumann": "Romantic", "Clara Schumann": "Romantic",
    "Frédéric Chopin": "Romantic", "Giuseppe Verdi": "Romantic", "Carl Maria von Weber": "Romantic",
    "Stephen Foster": "Romantic", "Liliuokalani": "Romantic", "Amy Beach": "Romantic",
    "Scott Joplin": "20th-century", "Irving Berlin": "20th-century", "J. Rosamond Johnson": "20th-century",
    "Arnold Schoenberg": "20th-century", "Anton Webern": "20th-century",
}  # fmt: skip
ANONYMOUS = "anonymous"
FOLDER_COMPOSERS: dict[str, str] = {
    "bach": "Johann Sebastian Bach", "beethoven": "Ludwig van Beethoven", "haydn": "Joseph Haydn",
    "monteverdi": "Claudio Monteverdi", "mozart": "Wolfgang Amadeus Mozart",
    "palestrina": "Giovanni Pierluigi da Palestrina", "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann", "schoenberg": "Arnold Schoenberg",
}  # fmt: skip


@dataclass(frozen=True)
class Single:
    """A one-off score's facts (its work is itself)."""

    composer: str
    genre: str
    title: str
    ensemble: str | None = None
    collection: str | None = None
    movement: str | None = None


# One-off scores, by path without suffix: facts the files do not carry, or carry garbled.
SINGLES: dict[str, Single] = {
    "beach/prayer_of_a_tired_child": Single(
        "Amy Beach", "part song", "Prayer of a Tired Child, Op. 75 No. 4", "women's chorus and piano"
    ),
    "chopin/mazurka06-2": Single(
        "Frédéric Chopin", "mazurka", "Mazurka in C-sharp minor, Op. 6 No. 2", "piano"
    ),
    "ciconia/quod_jactatur": Single("Johannes Ciconia", "canon", "Quod jactatur"),
    "corelli/opus3no1/1grave": Single(
        "Arcangelo Corelli",
        "trio sonata",
        "Sonata da chiesa Op. 3 No. 1",
        "two violins and continuo",
        movement="first movement",
    ),
    "cpebach/h186": Single(
        "Carl Philipp Emanuel Bach",
        "keyboard sonata",
        "Sonata in A major, H. 186, Wq. 55/4",
        "keyboard",
        movement="second movement",
    ),
    "handel/rinaldo/Lascia_chio_pianga": Single(
        "George Frideric Handel", "aria", "Lascia ch'io pianga", "voice and piano", "the opera Rinaldo"
    ),
    "johnson_j_r/lift_every_voice": Single("J. Rosamond Johnson", "hymn", "Lift Every Voice and Sing"),
    "joplin/maple_leaf_rag": Single("Scott Joplin", "rag", "Maple Leaf Rag", "piano"),
    "leadSheet/berlinAlexandersRagtime": Single(
        "Irving Berlin", "song", "Alexander's Ragtime Band", "melody and chord symbols"
    ),
    "leadSheet/fosterBrownHair": Single(
        "Stephen Foster", "song", "Jeanie with the Light Brown Hair", "melody and chord symbols"
    ),
    "liliuokalani/aloha_oe": Single("Liliuokalani", "song", "Aloha Oe", "voices and piano"),
    "luca/gloria": Single("D. Luca", "mass movement", "Gloria", movement="Gloria"),
    "lusitano/allor_che_ignuda": Single(
        "Vicente Lusitano", "madrigal", "Allor che ignuda d'herb et fior la terra"
    ),
    "schubert/Lindenbaum": Single(
        "Franz Schubert", "lied", "Der Lindenbaum", "voice and piano", "Winterreise", "No. 5"
    ),
    "verdi/laDonnaEMobile": Single(
        "Giuseppe Verdi", "aria", "La donna è mobile", "voice and piano", "the opera Rigoletto"
    ),
    "weber/concertino_clarinet": Single(
        "Carl Maria von Weber", "concertino", "Clarinet Concertino, Op. 26", "clarinet and piano"
    ),
    "webern/webern_dormi_jesu_op_16_no_2": Single(
        "Anton Webern",
        "canon",
        "Dormi Jesu, Op. 16 No. 2",
        "voice, clarinet and bass clarinet",
        "Five Canons on Latin Texts",
    ),
}

# Monteverdi's Books III-V of madrigals as published (1592, 1603, 1605): number -> first line; the
# madrigals in several parts ("prima parte", "seconda parte"...) are one work each.
MONTEVERDI_BOOKS: dict[int, tuple[str, ...]] = {
    3: (
        "La giovinetta pianta",
        "O come è gran martire",
        "Sovra tenere herbette",
        "O dolce anima mia",
        "Stracciami pur il core",
        "O rossignuol ch'in queste verdi fronde",
        "Se per estremo ardore",
        "Vattene pur crudel",
        "Là tra 'l sangue e le morti",
        "Poi ch'ella in sé tornò",
        "O primavera gioventù de l'anno",
        "Perfidissimo volto",
        "Ch'io non t'ami cor mio",
        "Occhi un tempo mia vita",
        "Vivrò fra i miei tormenti",
        "Ma dove, o lasso me",
        "Io pur verrò là dove sete",
        "Lumi, miei cari lumi",
        "Rimanti in pace",
        "Ond'ei di morte",
    ),
    4: (
        "Ah dolente partita",
        "Cor mio, mentre vi miro",
        "Cor mio, non mori?",
        "Sfogava con le stelle",
        "Volgea l'anima mia",
        "Anima mia, perdona",
        "Che se tu se' il cor mio",
        "Luci serene e chiare",
        "La piaga c'ho nel core",
        "Voi pur da me partite",
        "A un giro sol de' begl'occhi",
        "Ohimè, se tanto amate",
        "Io mi son giovinetta",
        "Quel augellin che canta",
        "Non più guerra, pietate",
        "Sì ch'io vorrei morire",
        "Anima dolorosa",
        "Anima del cor mio",
        "Longe da te, cor mio",
        "Piagn'e sospira",
    ),
    5: (
        "Cruda Amarilli",
        "O Mirtillo, Mirtill'anima mia",
        "Era l'anima mia",
        "Ecco, Silvio",
        "Ma se con la pietà",
        "Dorinda, ah dirò",
        "Ecco, piegando le ginocchia a terra",
        "Ferir quel petto, Silvio?",
    ),
}
MONTEVERDI_CYCLES = {(3, 8): 3, (3, 15): 3, (3, 19): 2, (4, 6): 2, (5, 4): 5}  # (book, first number): parts
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
PART_NAMES = ("prima", "seconda", "terza", "quarta", "quinta")
BOOK_NAMES = {3: "Third", 4: "Fourth", 5: "Fifth"}
# Mass movements by the start of a file name or title (Palestrina: "Agnus_II_03", trecento: "Credo Cursor").
MASS_PARTS = {
    "kyrie": "Kyrie", "gloria": "Gloria", "credo": "Credo", "sanctus": "Sanctus", "benedictus": "Benedictus",
    "agnus": "Agnus Dei", "benedicamus": "Benedicamus Domino",
}  # fmt: skip
QUARTET_NICKNAMES = {
    "beethoven/op59no1": "Razumovsky", "beethoven/op59no2": "Razumovsky", "beethoven/op59no3": "Razumovsky",
    "beethoven/op74": "Harp", "beethoven/op133": "Große Fuge", "mozart/k458": "The Hunt",
}  # fmt: skip
