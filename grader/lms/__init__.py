"""Learning-management systems: reading what staff download from them, writing what staff
upload back. Nothing here grades; it turns an LMS's files into submissions and records into
the LMS's files."""
