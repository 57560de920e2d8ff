"""`cockpit demo`: a self-driving sandbox repository with a local corpus and search agents."""
