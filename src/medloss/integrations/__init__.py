"""Integrations with other libraries (each imports its library on first use)."""
