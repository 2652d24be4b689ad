"""tg.train (being written)."""
