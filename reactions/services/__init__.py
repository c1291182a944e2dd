"""Writes of reactions, split by subdomain: live taps, counter flushing, reactions on comments."""
