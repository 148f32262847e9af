"""SQLite storage: schema, migrations and the one Store."""
