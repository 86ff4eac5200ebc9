"""Client SDK and command line of the two-shot virtual autofocus (TSVA) service."""
