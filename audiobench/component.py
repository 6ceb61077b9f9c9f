"""The base of every registered component: typed parameters plus a one-line description."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Parameters of a component; unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """A registered, parameterised piece: a method, dataset, contamination, domain or model.

    Subclasses set ``Params`` (a :class:`Params` subclass with defaults) and a docstring whose
    first line is the description ``audiobench list`` prints.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | dict[str, Any] | None = None):
        if params is None or isinstance(params, dict):
            params = self.Params(**(params or {}))
        self.params = params

    @classmethod
    def description(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def label(cls) -> str:
        return cls.display_name or cls.name
