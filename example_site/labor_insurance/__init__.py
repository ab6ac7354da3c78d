"""勞保局 labor-insurance lookup: certificate + ID number + birth date."""
