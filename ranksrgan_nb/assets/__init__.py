"""Data files of ranksrgan_nb (the NIQE pristine model; shipped weights under `weights/`): a package, so that
setuptools installs them as package data."""
