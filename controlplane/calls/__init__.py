"""The platform's calls into machines and hosts: the signed daemon client, the host caller, and a
byte stream joined from the platform's side."""
