"""Multimodal top-K recommenders over item-feature modalities (FREEDOM, mrcsaf, VBPR, LATTICE, BM3) and their
shared base (:mod:`attnrec.models.multimodal.base`)."""
