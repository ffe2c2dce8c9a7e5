"""Retrieval: exact inner-product search and the revisited Oxford/Paris evaluation protocol."""
