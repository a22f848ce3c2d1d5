"""attnrec.evaluation."""
