"""attnrec.experiments."""
