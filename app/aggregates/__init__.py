"""The aggregate model, in one place: the order-free dossier merge, what a dossier contributes to
the counters, the counter names, the aggregate tables' writes and reads (own rows per unit and the
per-level rollup rows of provinces and the nation), and the rebuild from the event log.

`ingest`, `scoring` and `export` use this package; it imports none of them.
"""
