"""The base of every registered component: typed parameters plus a one-line description."""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)


def _flat_types(annotation: Any) -> set[Any]:
    """The types a (possibly union) annotation admits at its top level."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return {t for a in typing.get_args(annotation) for t in _flat_types(a)}
    return {annotation}


class NoBoolNumbers(BaseModel):
    """Refuses ``true`` / ``false`` for a number: pydantic would read them as 1 and 0."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            admitted = _flat_types(cls.model_fields[info.field_name].annotation)
            if bool not in admitted and Any not in admitted and admitted & {int, float}:
                raise ValueError("Input should be a number, not a boolean")
        return value


class Params(NoBoolNumbers):
    """Parameters of a component; unknown keys are an error, values are immutable, numbers are not booleans
    and are finite (``inf`` and ``nan`` are refused: an infinite loss weight trained to NaN silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Fields added after results and artefacts were committed. At their default value they are left
    #: out of every dump (``model_dump``, nested dumps, JSON), hence out of the suite's resolved form,
    #: the cell hashes and the fit keys: the earlier behaviour is the default, so the earlier keys, the
    #: committed runs and the shipped fits stay valid. Set to another value, a field is dumped as usual.
    added_fields: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_added_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if self.added_fields and isinstance(out, dict):
            for name in self.added_fields & out.keys():
                if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                    del out[name]
        return out


class Component:
    """A registered, parameterised piece: a method, dataset, contamination, domain or model.

    Subclasses set ``Params`` (a :class:`Params` subclass with defaults) and a docstring whose
    first line is the description ``audiobench list`` prints. The hooks every kind shares are declared
    here with their defaults (:meth:`description`, :meth:`label`, :meth:`details`); each kind's base
    (``ModelSpec``, ``Explainer``, ``Dataset``, ``Contamination``, ``Domain``) declares its own, so the
    harness calls a hook directly and a component overrides only what it changes.
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
        """The one line ``audiobench list`` prints: the first line of the class docstring ("" without one)."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def label(cls) -> str:
        """The component's display name: ``display_name``, else its registered ``name``. A method's row
        in the tables starts from it (``Explainer.row_label``; the terms: ``suites/README.md``, *List entries*)."""
        return cls.display_name or cls.name

    @classmethod
    def details(cls) -> list[str]:
        """Further lines ``audiobench list KIND --verbose`` prints above the parameters (a dataset's URL,
        citation and licence; a model's output kind and front end), one string each; ``[]`` (the default):
        none. Called on the class, never fails."""
        return []
