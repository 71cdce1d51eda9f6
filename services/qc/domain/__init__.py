"""qc's pure domain: agreement, golden accuracy, consensus, kNN and label-error checks, drift, reports, final labels."""
