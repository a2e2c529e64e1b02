"""Reading masks and writing/reading the project's image files."""
