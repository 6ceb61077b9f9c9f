"""Suite files: YAML -> a validated :class:`Suite`, every error located as ``file:line: message``.

The format is documented key by key in ``suites/README.md``; ``suites/quickstart.yaml`` is a
commented example. The pieces: :mod:`.schema` (what a suite holds), :mod:`.lines` (YAML with line
numbers, located errors), :mod:`.overrides` (``--set``), :mod:`.parse` (validation).
"""

from audiobench.suite.lines import LocatedErrors, SuiteErrors, load_yaml
from audiobench.suite.overrides import apply_overrides
from audiobench.suite.parse import load_suite, parse_suite
from audiobench.suite.schema import (
    DEFAULT_METRICS,
    TOP_LEVEL_KEYS,
    AudioParams,
    ComponentSpec,
    MaskParams,
    Suite,
    TrainParams,
)

__all__ = [
    "DEFAULT_METRICS", "TOP_LEVEL_KEYS", "AudioParams", "ComponentSpec", "LocatedErrors", "MaskParams", "Suite", "SuiteErrors",
    "TrainParams", "apply_overrides", "load_suite", "load_yaml", "parse_suite",
]
