"""attnrec.text."""
