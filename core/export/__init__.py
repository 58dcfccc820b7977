"""Compliance exports: files an auditor verifies with no database (issue 11).

`fileformat` and `verify` never touch PostgreSQL; `writer` reads the sealed
chains from one snapshot and writes the files.
"""
