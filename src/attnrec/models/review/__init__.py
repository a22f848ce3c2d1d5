"""attnrec.models.review: rating models that read review text (DeepCoNN, TransNet, safmr).

Each model's module registers it (``models/base.py`` lists them in ``_BUILTIN_MODULES``); the shared text
pipeline is :mod:`attnrec.data.reviews`, the CNN text processor :mod:`attnrec.models.layers.text_cnn`.
"""
