"""The "clinic" fixture: a nursing-simulation EHR schema and a data seeder.

Used by the tests and the demo. ``schema.sql`` and ``config.sql`` ship as
package data; :mod:`simtrail.clinic.seed` applies them and fills them in.
"""
