"""Pieces both vendor clients need and neither vendor owns (kept here so sources/ and destinations/
stay ignorant of each other)."""
