"""tg.keras.utils: Keras's utilities (the progress bar: utils/progbar.py)."""

from tensorgrid.client.keras.utils.progbar import Progbar  # noqa: F401
