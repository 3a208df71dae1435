"""Retention of the raw event log (SPEC section 9): monthly archives, months dropped whole."""
