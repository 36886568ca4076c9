"""artsearch: influence-aware artwork search. This package holds what every service shares."""
