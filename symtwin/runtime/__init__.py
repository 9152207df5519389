"""The live service: clock, latest-value table, control cycle, metrics, and the snapshot the UI reads."""
