"""The counter names of the aggregate rows, declared once.

Day rows (`unit_day`, `rollup_day`) hold DAY_COUNTERS per unit, sector and local day; total rows
(`unit_total`, `rollup_total`) hold TOTAL_COUNTERS per unit and sector.
"""

from __future__ import annotations

# Additive flows of a day: what happened on it.
FLOWS = (
    "received",
    "received_online",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "resolved_unclassified",
    "withdrawn",
    "orphans",
    "proc_n",  # resolved dossiers with a receipt
    "proc_ms",  # their summed processing time, milliseconds (integers keep sums order-free)
)
# The INDEX-766 cohort, by day of receipt.
COHORT = (
    "c_size",  # cohort size
    "c_final_ok",  # of the cohort, ended no later than the deadline (on time whenever judged)
)
# Starts and stops of pending and overdue, so that a point in time is a difference of sums.
TOTALS = (
    "p_in",  # pending starts: by day of receipt
    "p_out",  # pending stops: by day of max(receipt, end)
    "o_in",  # overdue starts: by day of max(receipt, deadline)
    "o_out",  # overdue stops: by day of max(receipt, deadline, end)
)
# Dossiers due soon at a past local midnight, by local day D of their effective deadline: each
# dossier counts in one row, due_c<k> = 1 when it was pending at the start of day D - k. At the
# midnight starting day T: due_24h = due_c0(T), due_48h = + due_c1(T + 1), due_72h = + due_c2(T + 2).
DUE = ("due_c0", "due_c1", "due_c2")
FLOW_COUNTERS = (*FLOWS, *COHORT)  # summed over a period's days
DAY_COUNTERS = (*FLOW_COUNTERS, *TOTALS, *DUE)  # every column of a day row
TOTAL_COUNTERS = TOTALS  # every column of a total row
