"""Applying a trained generator: translate, tiling, video, serve, export, sample, and loading
generators from any checkpoint."""
