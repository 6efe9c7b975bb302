"""Learned user simulators built from logged interactions (issue 4; builds on `recsim_env`)."""
