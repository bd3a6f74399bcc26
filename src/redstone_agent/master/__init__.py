"""Master OTA: the whole-vehicle campaign on the TBox (docs/master.md)."""
