"""HTTP only: the embedded BOINC server (scheduler/, uploads, downloads, account RPCs, the WSGI app and its process)."""
