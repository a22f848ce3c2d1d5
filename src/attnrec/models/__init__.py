"""attnrec.models."""
