"""attnrec.training."""
