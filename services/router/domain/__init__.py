"""The router's pure domain: tier decisions, spot-check and golden scheduling, learned thresholds."""
