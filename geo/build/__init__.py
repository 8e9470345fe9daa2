"""Building the store: fetch the sources, derive every layer, validate, swap in (pipeline)."""
