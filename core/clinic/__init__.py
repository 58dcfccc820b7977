"""The "clinic" fixture: a nursing-simulation EHR schema and a data seeder.

Used by the tests and the demo. ``schema.sql`` and ``config.sql`` ship as
package data, with ``copy_config.sql`` (declared references and copy rules,
applied once simtrail is installed); :mod:`simtrail.clinic.seed` applies them
and fills them in.
"""
