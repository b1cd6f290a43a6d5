"""Trial statuses and the metric trials are ranked by: one home for the words every layer uses.

A trial reports ``hp_status`` (running, completed, diverged, skipped-invalid); the sweep's results
add the two it cannot report itself: early-stopped (the scheduler stopped it) and errored (it crashed
past its retries). Ray-free, so the results table and the report import it without Ray.
"""

METRIC = "best_val_loss"
"""A trial's score: the lowest validation loss it reached (the tuning playbook's choice)."""

RUNNING = "running"
COMPLETED = "completed"
DIVERGED = "diverged"
SKIPPED = "skipped-invalid"
EARLY_STOPPED = "early-stopped"
ERRORED = "errored"

REPORTED = (RUNNING, COMPLETED, DIVERGED, SKIPPED)
"""What a trial itself reports as ``hp_status``."""
STATUSES = (COMPLETED, EARLY_STOPPED, DIVERGED, ERRORED, SKIPPED)
"""A finished trial's status in the results table, in the order summaries list them."""
RANKED = (COMPLETED, EARLY_STOPPED)
"""Statuses whose trials compete for best; diverged, errored and skipped trials never win."""
FAILED = (DIVERGED, ERRORED)
