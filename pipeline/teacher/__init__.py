"""The teacher: trained once on labels, then reachable only as a counted, budgeted black box."""
