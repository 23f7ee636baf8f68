"""Tollgate domain package: plain Python, no Lambda event types inside."""
