"""Restricted-from-leaving-the-country lookup (限制出境查詢): certificate + ID number."""
