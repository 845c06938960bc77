"""Input → patches: ABC tunes and headers, score formats (MusicXML, MIDI), bar patching."""
