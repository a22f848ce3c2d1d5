"""attnrec.models.sequential."""
