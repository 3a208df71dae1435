"""Shared answers: the polled KPI answers made once and served by every worker and replica."""
