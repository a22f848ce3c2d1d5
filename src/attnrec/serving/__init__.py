"""attnrec.serving."""
