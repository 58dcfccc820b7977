"""The long-running worker: ticks, compaction into an archive, retention,
self-healing triggers, leadership, health and metrics."""
