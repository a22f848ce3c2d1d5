"""attnrec.models.ctr."""
