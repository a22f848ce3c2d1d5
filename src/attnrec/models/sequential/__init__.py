"""Sequential recommenders over padded item sequences: sasrec (single or mixed domain) and gca (per-domain and
mixed encoders joined by gated cross-attention)."""
