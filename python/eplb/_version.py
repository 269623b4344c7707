"""The package's version: the version of libeplb it was written for (the
major and minor numbers must match the loaded library's)."""
VERSION = "0.1.0"
