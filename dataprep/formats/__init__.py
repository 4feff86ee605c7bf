"""Readers for the MPII annotation forms; `dataprep.mpii` is the entry point that picks one."""
