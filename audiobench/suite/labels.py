"""Method rows' labels and what makes two rows the same: the default labels, the parameters appended when
rows share a name, the label a row's cells hash, and the refusal of a row that repeats another."""

from __future__ import annotations

from audiobench.kernel.cache import stable_hash
from audiobench.suite.lines import KeyPath, LocatedErrors
from audiobench.suite.schema import ComponentSpec


def method_labels(methods: list[ComponentSpec], errors: LocatedErrors, path: KeyPath) -> None:
    """Fill default row labels (a method's ``Explainer.row_label()`` where the suite gives no ``label:``);
    rows sharing a display name get their parameters appended. Each row's ``identity_label`` is the label it
    has on its own, what its cell ids hash, so editing one row never moves another's cells. Adds to
    ``errors`` a label used twice, and an entry that repeats another (same method, parameters with their
    defaults filled in, and label on its own: the same cells)."""
    defaults = [m.label or m.build().row_label() for m in methods]
    for i, m in enumerate(methods):
        m.identity_label = defaults[i]
        if m.label:
            continue
        clash = sum(d == defaults[i] for d in defaults) > 1
        if clash and m.params:
            args = ", ".join(f"{k}={v}" for k, v in m.params.items())
            m.label = f"{defaults[i]} ({args})"
        else:
            m.label = defaults[i]
    seen: dict[str, int] = {}
    same: dict[str, int] = {}
    for i, m in enumerate(methods):
        if m.label in seen:
            errors.add(path + (i,), f"duplicate row label '{m.label}' (also entry {seen[m.label] + 1}); set 'label:'")
            continue
        seen[m.label] = i
        key = stable_hash({**m.resolved(), "label": m.identity_label})  # what its cells hash, paths as written
        if key in same:
            errors.add(path + (i,), (f"entry {i + 1} repeats entry {same[key] + 1}: the same method with the same "
                                     "parameters (defaults filled in) gives the same cells; remove one"))
        same.setdefault(key, i)
