"""attnrec.models.topk."""
