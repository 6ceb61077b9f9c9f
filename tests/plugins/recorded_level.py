"""A level-dependent model that reads clips at their recorded level (``peak_normalise = False``): the hand-built
band-energy model of the planted data, under its own name (tests/data/test_input_level.py)."""

from audiobench.api import MODELS
from audiobench.models.handbuilt import BandEnergySpec


@MODELS.register("band_energy_recorded")
class RecordedBandEnergySpec(BandEnergySpec):
    """``band_energy`` on clips as recorded: no peak normalisation in any condition."""

    peak_normalise = False
