"""Code submissions the tests submit: sources as text, written into a submission folder."""

#: An honest submission: a power law of log total counts, fitted on the training fold.
POWER_LAW = """
import numpy as np

class CountsPowerLaw:
    def __init__(self, config):
        self.seed = config["random_seed"]

    def fit(self, train, val):
        x = np.log10(train.images.sum(axis=(1, 2)))
        self.slope, self.offset = np.polyfit(x, train.y, 1)
        return self

    def predict(self, data):
        return self.offset + self.slope * np.log10(data.images.sum(axis=(1, 2)))

def make_model(config):
    return CountsPowerLaw(config)
"""
#: The line of POWER_LAW's predict, for tests that break it on purpose.
POWER_LAW_PREDICT = "return self.offset + self.slope * np.log10(data.images.sum(axis=(1, 2)))"
