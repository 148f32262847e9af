"""`make bench`: fixtures, load and reports for the knock endpoints (issue 7)."""
