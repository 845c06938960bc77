"""The classical scores of music21's corpus (MusicXML, MXL, Humdrum) as training and evaluation records.

    from training.classical.corpus import load_classical
    from training.classical.texts import canonical_text, text_variants

    pieces = load_classical()  # converts once (minutes, cached under build/train-cache/), then seconds
    train = [p for p in pieces if p.split == "train"]
    texts = text_variants(train[0].facts, 4, seed=0, piece_id=train[0].id)
    labels = train[0].facts.labels()  # {"composer": ..., "genre": ..., "era": ..., "meter": ..., "mode": ...}

Modules by role: convert (scores -> ABC + metadata, cached), catalogue (facts the files lack), works and
trecento (which work a file is), music (the ABC the model sees, with no label in it), facts (what can be said
about a score), texts (training texts and the canonical eval text), corpus (records, dedupe, split by work).
`python -m training.classical` prints the summary table.
"""
