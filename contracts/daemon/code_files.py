"""The marker of an installed code directory (``~/.fleet/code/<sha>``, base/codestore.py), in a
module that imports nothing: ``fleet --version`` reads it through base/version.py, and
contracts.daemon.machine_files, where the other file names are, loads msgspec (half of that
command's start-up)."""

#: Written into an installed code directory: the SHA the directory holds.
CODE_SHA_FILE = ".fleet-git-sha"
