"""The long-running worker (ticks, compaction, archive, self-healing triggers).

Not built yet: it is the subject of a later issue. `simtrail install` and the
config commands keep triggers in line with the config in the meantime.
"""
