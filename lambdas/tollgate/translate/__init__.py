"""Translations between wire formats, one module per pair: a request in one format as the other's, and the
answer (plain and streamed) back. Pure functions over dicts: no SDK, no I/O."""
