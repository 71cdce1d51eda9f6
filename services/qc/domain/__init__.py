"""qc's pure domain: agreement, golden accuracy, consensus, kNN and confident-learning checks, drift, reports, final labels."""
