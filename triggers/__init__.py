"""Capture: the versioned SQL that builds schema `simtrail`, and the installer."""
