"""Shipped generator weights, one folder per profile (see `ranksrgan_nb.cli.find_weights`)."""
