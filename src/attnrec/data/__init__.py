"""attnrec.data."""
