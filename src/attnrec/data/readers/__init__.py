"""attnrec.data.readers."""
