"""Generative models in use: sampling text from language models and images from GANs (``palaestra generate``)."""
