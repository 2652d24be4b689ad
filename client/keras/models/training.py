"""Model training: compile, fit, evaluate, predict (filled in by the next slice)."""


class Trainer:
    """The training half of keras.Model."""

    def __init__(self):
        self.compiled = False
        self.optimizer = None
