"""attnrec.models.review."""
