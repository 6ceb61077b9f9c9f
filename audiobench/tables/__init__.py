"""Paper-style comparison tables from stored per-sample results.

Input is the long per-sample frame (columns ``dataset, model, domain, contamination, method, row,
sample_id, target, metric, value``). :func:`build_tables` aggregates it with ``groupby`` (no per-row loops) into one
:class:`Table` per combination of ``spec.per`` values; :func:`to_markdown`, :func:`to_latex` and
:func:`to_csv` render a table and :func:`write_tables` writes all three files.

Conventions:

* ``spec.metrics=None`` shows the metrics of ``metric_info``, in its order, that occur in the frame
  (so auxiliary rows such as ``p_orig`` or ``pred_in`` stay out unless named in ``spec.metrics``);
* values are aggregated per (per-key, group, row, metric) with the metric's ``aggregation``
  (``"mean"`` or ``"median"``) over samples; NaN values are skipped and not counted in ``n``;
* the best value of each column is bold within each group block, comparing the *printed*
  (rounded) values, so ties -- including values that only look equal -- are all bold; metrics
  whose ``higher_is_better`` is ``None`` are never bold, and nothing is bold in a column where
  fewer than two rows of the block have a value (there is nothing to compare);
* a missing cell prints as an en dash (``–`` in Markdown, ``--`` in LaTeX) and is empty in CSV;
* missing values in the key, group or row columns are shown as ``"none"``.
"""

from audiobench.tables.aggregate import MISSING, MISSING_LATEX, Table, TableSpec, build_tables
from audiobench.tables.render import _fmt, latex_escape, to_csv, to_latex, to_markdown, write_tables
from audiobench.tables.run import render_run, run_tables

__all__ = [
    "MISSING",
    "MISSING_LATEX",
    "Table",
    "TableSpec",
    "_fmt",
    "build_tables",
    "latex_escape",
    "render_run",
    "run_tables",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_tables",
]
