"""Household-registration e-transcripts (戶籍謄本): signed files anyone can verify."""
