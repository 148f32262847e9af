"""Pure Matrix protocol rules: ids, room versions, events, signing, auth rules, ACLs (no I/O)."""
