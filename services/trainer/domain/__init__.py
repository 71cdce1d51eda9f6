"""The trainer's pure rules: which labels an example keeps, when a retrain is due, how a head is fitted, judged and
promoted, and what its announcement says."""
