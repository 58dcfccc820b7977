"""Install scripts of earlier releases, for upgrade tests on a populated log."""
