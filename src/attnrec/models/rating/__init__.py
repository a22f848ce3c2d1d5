"""attnrec.models.rating."""
