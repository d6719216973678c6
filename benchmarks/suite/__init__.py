"""Data-set loaders and tables of the real-data quality suite (``benchmarks/quality_suite.py``).

One module per data set. Each offers ``NAME``, ``load(root, quick) -> list[Case]``,
``per_case(case, scored) -> dict`` (figures of one scored series), ``summarise(rows)``
(figures of a protocol, from the per-case rows of one detector) and
``tables(summaries) -> str`` (markdown, every detector side by side, protocol stated).
The protocol code they share is :mod:`sensorguard.evaluation.suite` and
:mod:`sensorguard.evaluation.explain`. The data are read from ``../shared/data`` and
never copied into the project.
"""
