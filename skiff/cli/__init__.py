"""The command-line interface: parse, call one library function, print."""
