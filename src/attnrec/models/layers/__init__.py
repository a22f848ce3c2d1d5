"""attnrec.models.layers."""
